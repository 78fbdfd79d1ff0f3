"""How well the estimator fits the generator: its log-density on generator samples against a refitted copy's."""

import copy

import pytorch_lightning as pl
import torch

from lbt_lightning.callbacks.periodic import EveryNIterations, log_metrics


class EstimatorFit(EveryNIterations):
    """Every N iterations and at the end of fit, the estimator's mean log p_φ (the ELBO for a VAE)
    on samples ``0..num_samples-1`` of the generator (the one evaluation path), and that of a copy
    refitted to them with Adam for ``refit_steps`` full-batch steps: logged as
    ``val/estimator_log_prob``, ``val/estimator_refit_log_prob`` and ``val/estimator_lag`` (refit −
    current, nats per sample). The teaching signal assumes the estimator fits the generator; a lag
    that grows says the estimator does not keep up (a larger ``estimator_lr`` or more
    ``estimator_steps`` may help; docs/methods.md).

    For LBT and LBT-GAN (a module with ``estimator``). The refit runs on every DDP rank on the same
    samples with the same seed, so every rank logs the same numbers.

    Arguments:
        every_n_iterations: Period.
        num_samples: Generator samples.
        refit_steps: Adam steps of the refit.
        refit_lr: Its learning rate.
    """

    def __init__(
        self, every_n_iterations: int = 1000, num_samples: int = 5000, refit_steps: int = 3000, refit_lr: float = 1e-2
    ):
        super().__init__(every_n_iterations)
        for name, value in (("num_samples", num_samples), ("refit_steps", refit_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not refit_lr > 0:
            raise ValueError(f"refit_lr must be > 0, got {refit_lr!r}")
        self.num_samples, self.refit_steps, self.refit_lr = num_samples, refit_steps, refit_lr
        self.last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "estimator"):
            raise ValueError(
                f"EstimatorFit needs a method with an estimator (LBT, LBTGAN), got {type(pl_module).__name__}"
            )

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, iteration: int) -> None:
        samples = pl_module.sample_indexed(torch.arange(self.num_samples)).float()
        torch.manual_seed(0)  # the VAE's noise: the same on every rank (the RNG is forked around this)
        current = self.mean_log_prob(pl_module.estimator, samples)
        refit = self.refit(pl_module.estimator, samples)
        self.last = {
            "val/estimator_log_prob": current,
            "val/estimator_refit_log_prob": refit,
            "val/estimator_lag": refit - current,
        }
        log_metrics(trainer, pl_module, self.last, step=iteration)

    @staticmethod
    @torch.no_grad()
    def mean_log_prob(estimator: torch.nn.Module, samples: torch.Tensor) -> float:
        return float(estimator.log_prob(samples).mean())

    def refit(self, estimator: torch.nn.Module, samples: torch.Tensor) -> float:
        """Mean log p of a copy of ``estimator`` after ``refit_steps`` Adam steps on ``samples``."""
        copy_ = copy.deepcopy(estimator).float().requires_grad_(True)
        optimizer = torch.optim.Adam(copy_.parameters(), lr=self.refit_lr)
        with torch.enable_grad():
            for _ in range(self.refit_steps):
                optimizer.zero_grad()
                (-copy_.log_prob(samples).mean()).backward()
                optimizer.step()
        return self.mean_log_prob(copy_, samples)
