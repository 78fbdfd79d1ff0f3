"""Sample-index batches for Lightning's validate, test and predict loops (a generator's "data" there)."""

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

EVALUATORS = "ModeCoverageCallback, StackedMNISTModesCallback or ImageQuality"


class SampleIndices(Dataset):
    """The integers 0..n-1; batches of them are the inputs of ``validation_step``/``test_step``/
    ``predict_step``, which draw sample i from noise seeded with i (``GenerativeModule.sample_indexed``)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.n:
            raise IndexError(f"sample index {index} out of range(0, {self.n})")
        return index


class RankShard(DistributedSampler):
    """Indices ``rank, rank + W, rank + 2W, ...``: every index on exactly one of the W ranks.

    Lightning's own ``DistributedSampler`` pads the ranks to equal length with repeated indices,
    which would count some samples twice; being a ``DistributedSampler``, this one is kept as is.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class SampleIndexLoaders:
    """Mixin for a LightningDataModule with ``batch_size``: ``val_dataloader``, ``test_dataloader``
    and ``predict_dataloader`` yield batches of sample indices, split over the DDP ranks.

    How many: the largest ``num_samples_for(stage)`` among the trainer's callbacks (the
    evaluation callbacks for ``validate``/``test``, :class:`~lbt_lightning.callbacks.SampleWriter`
    for ``predict``), each of which then takes the indices below its own count. During ``fit``
    the loaders are empty: training evaluates through the callbacks every N iterations, and an
    extra validation pass would only cost time.
    """

    def val_dataloader(self) -> DataLoader | list:
        return self.sample_index_loader("validate")

    def test_dataloader(self) -> DataLoader | list:
        return self.sample_index_loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        return self.sample_index_loader("predict")

    def sample_index_loader(self, stage: str) -> DataLoader | list:
        trainer: pl.Trainer = self.trainer
        if trainer.state.fn == TrainerFn.FITTING:
            return iter(())
        counts = [cb.num_samples_for(stage) for cb in trainer.callbacks if hasattr(cb, "num_samples_for")]
        counts = [n for n in counts if n]
        if not counts:
            needs = "SampleWriter" if stage == "predict" else EVALUATORS
            raise ValueError(f"`{stage}` has nothing to compute: add a {needs} to trainer.callbacks")
        indices = SampleIndices(max(counts))
        sampler = RankShard(indices, trainer.world_size, trainer.global_rank)
        return DataLoader(indices, batch_size=self.batch_size, sampler=sampler)
