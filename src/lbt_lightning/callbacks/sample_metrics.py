"""Mode coverage of generator samples, logged as val/modes, val/hq, val/kl."""

import pytorch_lightning as pl

from lbt_lightning.callbacks.periodic import EveryNIterations, log_metrics
from lbt_lightning.metrics.mode_coverage import ModeCoverage


class ModeCoverageCallback(EveryNIterations):
    """Samples ``num_samples`` points (split across DDP ranks) and logs :class:`ModeCoverage`.

    The datamodule must expose ``centers`` and ``sigma``.

    Arguments:
        every_n_iterations: Evaluation period.
        num_samples: Samples per evaluation over all ranks (VEEGAN: 2,500).
        k: HQ radius in units of σ.
        min_count: HQ samples for a mode to count (1: VEEGAN, 20: PacGAN-style).
    """

    def __init__(self, every_n_iterations: int = 500, num_samples: int = 2500, k: float = 3.0, min_count: int = 1):
        super().__init__(every_n_iterations)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self.num_samples, self.k, self.min_count = num_samples, k, min_count
        self.metric: ModeCoverage | None = None
        self.last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if not (hasattr(dm, "centers") and hasattr(dm, "sigma")):
            raise ValueError(f"ModeCoverageCallback needs a datamodule with centers and sigma, got {type(dm).__name__}")
        self.metric = ModeCoverage(dm.centers, dm.sigma, k=self.k, min_count=self.min_count)

    def evaluate(self, trainer, pl_module, iteration: int) -> None:
        metric = self.metric.to(pl_module.device)
        metric.reset()
        n = -(-self.num_samples // trainer.world_size)  # ceil: every rank draws its share
        metric.update(pl_module.sample(n))
        values = metric.compute()
        self.last = {f"val/{k}": float(v) for k, v in values.items()}
        log_metrics(trainer, pl_module, self.last, step=iteration)
