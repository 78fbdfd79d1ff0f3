"""Stacked MNIST mode count and KL of generator samples, logged as val/modes and val/kl."""

import pytorch_lightning as pl

from lbt_lightning.callbacks.periodic import EveryNIterations, log_metrics
from lbt_lightning.metrics.stacked_mnist import StackedMNISTModes


class StackedMNISTModesCallback(EveryNIterations):
    """Every N iterations and at the end, draws ``num_samples`` samples (split across DDP ranks) in
    chunks of ``batch_size`` and logs :class:`StackedMNISTModes` as ``val/modes`` and ``val/kl``.

    The classifier checkpoint is read in ``setup``, not at construction, so configs instantiate
    without it; make it with ``python -m lbt_lightning.classifier`` (see its docstring).

    Arguments:
        classifier_path: Checkpoint written by ``python -m lbt_lightning.classifier``.
        every_n_iterations: Evaluation period.
        num_samples: Samples per evaluation over all ranks (PAPER.md §5.2: 26,000).
        batch_size: Samples drawn and classified at once.
    """

    def __init__(
        self,
        classifier_path: str = "checkpoints/smnist_classifier.pt",
        every_n_iterations: int = 5000,
        num_samples: int = 26_000,  # PAPER.md §5.2: 260 x 100
        batch_size: int = 1000,
    ):
        super().__init__(every_n_iterations)
        for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.classifier_path = classifier_path
        self.num_samples, self.batch_size = num_samples, batch_size
        self.metric: StackedMNISTModes | None = None
        self.last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.metric is None:
            self.metric = StackedMNISTModes(self.classifier_path, batch_size=self.batch_size)

    def evaluate(self, trainer, pl_module, iteration: int) -> None:
        metric = self.metric.to(pl_module.device)
        metric.reset()
        remaining = -(-self.num_samples // trainer.world_size)  # ceil: every rank draws its share
        while remaining > 0:
            n = min(self.batch_size, remaining)
            metric.update(pl_module.sample(n))
            remaining -= n
        self.last = {f"val/{k}": float(v) for k, v in metric.compute().items()}
        log_metrics(trainer, pl_module, self.last, step=iteration)
