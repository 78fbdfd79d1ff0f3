"""Base of the metric callbacks: one code path for fit-time evaluation and Lightning's validate/test loops."""

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from lbt_lightning.callbacks.periodic import EveryNIterations, log_metrics

# Trainer function -> (stage asked of num_samples_for, log prefix)
LOOPS = {TrainerFn.VALIDATING: ("validate", "val"), TrainerFn.TESTING: ("test", "test")}


class SampleEvaluator(EveryNIterations):
    """Scores generator samples with torchmetrics metrics whose sum-reduced states are synced over
    the DDP ranks at compute; every rank scores its own share of the samples.

    - ``fit``: every ``every_n_iterations`` and at the last iteration, the samples
      ``0..num_samples_for("validate")-1`` of ``pl_module.sample_indexed``, each rank its chunks
      (``pl_module.sample_chunks``); logged as ``val/*`` to the loggers at that iteration. These are
      the samples, and so the numbers, of ``validate`` on that iteration's checkpoint.
    - ``validate`` (``lightning validate --ckpt_path ...``): the datamodule's sample-index batches
      go through ``validation_step`` (``pl_module.sample_indexed``); the samples of indices below
      ``num_samples_for("validate")`` are scored and logged as ``val/*``, which Lightning prints.
    - ``test``: the same with ``num_samples_for("test")``, the full reporting protocol, as ``test/*``.

    Subclasses implement ``num_samples_for``, ``begin``, ``consume`` and ``results``.

    Arguments:
        every_n_iterations: Fit-time evaluation period in iterations.
    """

    def __init__(self, every_n_iterations: int = 500):
        super().__init__(every_n_iterations)
        self.last: dict[str, float] = {}
        self.num_evaluated = 0
        self._loop_samples = 0

    def num_samples_for(self, stage: str) -> int | None:
        """Samples scored over all ranks in ``"validate"`` (also fit-time) or ``"test"``; None otherwise."""
        raise NotImplementedError

    def begin(self, trainer: pl.Trainer, pl_module: pl.LightningModule, num_samples: int) -> None:
        """Reset the metrics (on ``pl_module.device``) for an evaluation of ``num_samples`` samples."""
        raise NotImplementedError

    def consume(self, samples: Tensor) -> None:
        """Update the metrics with a batch of this rank's samples."""
        raise NotImplementedError

    def results(self) -> dict[str, float]:
        """Metric values over all ranks, keys without a prefix (``modes``, ``fid``, ...)."""
        raise NotImplementedError

    def consume_samples(self, pl_module: pl.LightningModule, num_samples: int, rank: int, world_size: int) -> None:
        """Consume this rank's chunks of the samples ``0..num_samples-1`` of ``pl_module.sample_indexed``."""
        for samples in pl_module.sample_chunks(num_samples, rank, world_size):
            self.consume(samples)
        self.num_evaluated = num_samples

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, iteration: int) -> None:
        num_samples = self.num_samples_for("validate")
        self.begin(trainer, pl_module, num_samples)
        self.consume_samples(pl_module, num_samples, trainer.global_rank, trainer.world_size)
        self.last = {f"val/{k}": v for k, v in self.results().items()}
        log_metrics(trainer, pl_module, self.last, step=iteration)

    # ---- Lightning's validate and test loops ------------------------------------------------------
    # During fit the datamodules serve no validation batches; the fit-time path above evaluates.

    def _loop_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn in LOOPS:
            self._loop_samples = self.num_samples_for(LOOPS[trainer.state.fn][0])
            self.begin(trainer, pl_module, self._loop_samples)

    def _loop_update(self, trainer: pl.Trainer, samples: Tensor, indices: Tensor) -> None:
        if trainer.state.fn in LOOPS:
            keep = indices.to(samples.device) < self._loop_samples  # the first N indices are this callback's
            if keep.any():
                self.consume(samples[keep])

    def _loop_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn in LOOPS:
            prefix = LOOPS[trainer.state.fn][1]
            self.num_evaluated = self._loop_samples
            self.last = {f"{prefix}/{k}": v for k, v in self.results().items()}
            pl_module.log_dict(self.last, sync_dist=True)  # equal on every rank already

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._loop_start(trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._loop_start(trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._loop_update(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._loop_update(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._loop_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._loop_end(trainer, pl_module)
