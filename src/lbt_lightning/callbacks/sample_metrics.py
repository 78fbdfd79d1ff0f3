"""Mode coverage of generator samples, logged as val/modes, val/hq, val/kl."""

import pytorch_lightning as pl

from lbt_lightning.callbacks.periodic import EveryNIterations, log_metrics
from lbt_lightning.metrics.mode_coverage import ModeCoverage


class ModeCoverageCallback(EveryNIterations):
    """Samples ``num_samples`` points (split across DDP ranks, then gathered) and logs
    :class:`ModeCoverage` as ``val/modes``, ``val/hq``, ``val/kl``.

    The datamodule must expose ``centers`` and ``sigma``.

    Arguments:
        every_n_iterations: Evaluation period.
        num_samples: Samples per evaluation over all ranks; None: the VEEGAN protocol's 2,500, or
            100 per mode when there are more than 25 modes (a 100-mode grid gets 10,000).
        k: HQ radius in units of σ.
        min_count: HQ samples for a mode to count (1: VEEGAN, 20: PacGAN-style).
    """

    def __init__(
        self, every_n_iterations: int = 500, num_samples: int | None = None, k: float = 3.0, min_count: int = 1
    ):
        super().__init__(every_n_iterations)
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self.num_samples, self.k, self.min_count = num_samples, k, min_count
        self.metric: ModeCoverage | None = None
        self.last: dict[str, float] = {}
        self.num_evaluated = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if not (hasattr(dm, "centers") and hasattr(dm, "sigma")):
            raise ValueError(f"ModeCoverageCallback needs a datamodule with centers and sigma, got {type(dm).__name__}")
        # The callback gathers every rank's samples itself, so the metric needs no sync of its own.
        self.samples_per_evaluation = self.num_samples or max(2500, 100 * len(dm.centers))
        self.metric = ModeCoverage(dm.centers, dm.sigma, k=self.k, min_count=self.min_count, sync_on_compute=False)

    def evaluate(self, trainer, pl_module, iteration: int) -> None:
        metric = self.metric.to(pl_module.device)
        metric.reset()
        n = -(-self.samples_per_evaluation // trainer.world_size)  # ceil: every rank draws its share
        local = pl_module.sample(n)
        samples = pl_module.all_gather(local).reshape(-1, *local.shape[1:])  # all ranks' samples
        metric.update(samples)
        values = metric.compute()
        self.num_evaluated = len(samples)
        self.last = {f"val/{k}": float(v) for k, v in values.items()}
        log_metrics(trainer, pl_module, self.last, step=iteration)
