"""Mode coverage of 2-D generator samples, logged as val/modes, val/modes_pacgan, val/hq, val/kl."""

import pytorch_lightning as pl
from torch import Tensor

from lbt_lightning.callbacks.evaluation import SampleEvaluator
from lbt_lightning.metrics.mode_coverage import ModeCoverage

PACGAN_MIN_COUNT = 20  # PacGAN (Lin et al. 2018): a mode counts with at least 20 HQ samples


class ModeCoverageCallback(SampleEvaluator):
    """:class:`ModeCoverage` of generator samples, during fit and in ``lightning validate``/``test``
    (see :class:`~lbt_lightning.callbacks.evaluation.SampleEvaluator`). Logs ``<prefix>/modes``
    (modes with at least ``min_count`` HQ samples; 1 is the VEEGAN rule), ``<prefix>/modes_pacgan``
    (at least 20, the PacGAN rule), ``<prefix>/hq``, ``<prefix>/kl`` and ``<prefix>/nonfinite``
    (samples with a NaN or inf coordinate, never HQ); the prefix is ``val``
    (fit, validate) or ``test``. The datamodule must expose ``centers`` and ``sigma``.

    Arguments:
        every_n_iterations: Evaluation period during fit.
        num_samples: Samples per evaluation over all ranks; None: the VEEGAN protocol's 2,500, or
            100 per mode when there are more than 25 modes (a 100-mode grid gets 10,000).
        k: HQ radius in units of σ.
        min_count: HQ samples for a mode to count in ``modes`` (1: VEEGAN).
        test_num_samples: Samples scored by ``lightning test``; None: as ``num_samples``.
    """

    def __init__(
        self,
        every_n_iterations: int = 500,
        num_samples: int | None = None,
        k: float = 3.0,
        min_count: int = 1,
        test_num_samples: int | None = None,
    ):
        super().__init__(every_n_iterations)
        for name, value in (("num_samples", num_samples), ("test_num_samples", test_num_samples)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        self.num_samples, self.k, self.min_count = num_samples, k, min_count
        self.test_num_samples = test_num_samples
        self.metric: ModeCoverage | None = None
        self.pacgan: ModeCoverage | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if not (hasattr(dm, "centers") and hasattr(dm, "sigma")):
            raise ValueError(f"ModeCoverageCallback needs a datamodule with centers and sigma, got {type(dm).__name__}")
        self.samples_per_evaluation = self.num_samples or max(2500, 100 * len(dm.centers))
        self.metric = ModeCoverage(dm.centers, dm.sigma, k=self.k, min_count=self.min_count)
        self.pacgan = ModeCoverage(dm.centers, dm.sigma, k=self.k, min_count=PACGAN_MIN_COUNT)

    def num_samples_for(self, stage: str) -> int | None:
        if stage == "test":
            return self.test_num_samples or self.samples_per_evaluation
        return self.samples_per_evaluation if stage == "validate" else None

    def begin(self, trainer: pl.Trainer, pl_module: pl.LightningModule, num_samples: int) -> None:
        for metric in (self.metric, self.pacgan):
            metric.to(pl_module.device).reset()

    def consume(self, samples: Tensor) -> None:
        self.metric.update(samples)
        self.pacgan.update(samples)

    def results(self) -> dict[str, float]:
        values = {k: float(v) for k, v in self.metric.compute().items()}
        values["modes_pacgan"] = float(self.pacgan.compute()["modes"])
        return {k: values[k] for k in ("modes", "modes_pacgan", "hq", "kl", "nonfinite")}
