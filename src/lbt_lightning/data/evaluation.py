"""Sample indices in chunks: the inputs of ``sample_indexed`` and of the validate, test and predict loops."""

from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

EVALUATORS = "ModeCoverageCallback, StackedMNISTModesCallback or ImageQuality"

SAMPLE_CHUNK = 100  # samples normalised together by a BatchNorm generator; the authors evaluate in chunks of 100


def chunk_noise(chunk: int, size: int, z_dim: int) -> Tensor:
    """z_i for the indices i of chunk ``chunk``: each drawn by a generator seeded with i."""
    rng = torch.Generator()
    return torch.stack(
        [torch.randn(z_dim, generator=rng.manual_seed(i)) for i in range(chunk * size, (chunk + 1) * size)]
    )


def rank_chunks(n: int, rank: int = 0, world_size: int = 1) -> Iterator[Tensor]:
    """The indices ``0..n-1`` in chunks of ``SAMPLE_CHUNK``, those of rank ``rank`` of ``world_size``."""
    for start in range(rank * SAMPLE_CHUNK, n, world_size * SAMPLE_CHUNK):
        yield torch.arange(start, min(start + SAMPLE_CHUNK, n))


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
    """The sample indices of rank ``rank`` of W in whole chunks of ``SAMPLE_CHUNK``: chunks
    ``rank, rank + W, ...`` (:func:`rank_chunks`), so that with a batch size of
    ``SAMPLE_CHUNK`` every batch is one chunk, every index is on exactly one rank, and sample i
    is the same on any number of devices.

    Lightning's own ``DistributedSampler`` pads the ranks to equal length with repeated indices,
    which would count some samples twice; being a ``DistributedSampler``, this one is kept as is.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = sum(len(c) for c in rank_chunks(len(dataset), rank, num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return (int(i) for chunk in rank_chunks(len(self.dataset), self.rank, self.num_replicas) for i in chunk)


class SampleIndexLoaders:
    """Mixin for a LightningDataModule: ``val_dataloader``, ``test_dataloader``
    and ``predict_dataloader`` yield batches of sample indices, split over the DDP ranks.

    How many: the largest ``num_samples_for(stage)`` among the trainer's callbacks (the
    evaluation callbacks for ``validate``/``test``, :class:`~lbt_lightning.callbacks.SampleWriter`
    for ``predict``), each of which then takes the indices below its own count, in batches of one chunk. During ``fit``
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
        return DataLoader(indices, batch_size=SAMPLE_CHUNK, sampler=sampler)
