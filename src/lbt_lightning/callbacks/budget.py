"""Training under a CPU-time budget, scored on the one evaluation path: the clock of ``make demo``
and of the time-to-quality and coverage benchmarks."""

import statistics
import time
from typing import Literal

import pytorch_lightning as pl
import torch

from lbt_lightning.callbacks.periodic import last_iteration
from lbt_lightning.callbacks.sample_metrics import PACGAN_MIN_COUNT
from lbt_lightning.metrics.mode_coverage import ModeCoverage

# What LBT-GAN logs about its generator gradient (docs/methods.md), kept at every logging step.
NORM_KEYS = ("train/grad_norm_gan", "train/grad_norm_teach", "train/teach_weight", "train/grad_norm")
GOALS = {"all_modes": "all modes (PacGAN rule)", "hq80": "80% HQ", "hq90": "90% HQ", "kl05": "KL <= 0.05"}


def coverage(metric: ModeCoverage, samples: torch.Tensor) -> dict:
    """``metric`` (with ``min_count`` 1) on ``samples``: modes under the VEEGAN rule (>= 1 HQ
    sample) and the PacGAN rule (>= 20), the HQ fraction, KL and the HQ histogram."""
    metric.reset()
    metric.update(samples)
    values = metric.compute()
    return {
        "modes_veegan": int((metric.counts >= 1).sum()),
        "modes_pacgan": int((metric.counts >= PACGAN_MIN_COUNT).sum()),
        "hq": float(values["hq"]),
        "kl": float(values["kl"]),
        "counts": metric.counts.tolist(),
    }


class CoverageBudget(pl.Callback):
    """Stops the fit after ``budget_s`` seconds on ``clock`` spent in training iterations
    (evaluations are not charged) and scores samples 0..``num_samples``-1 of ``sample_indexed``
    with both mode rules, % HQ and KL: at even times (``evaluations`` of them) or every
    ``every_n_iterations`` iterations, and at the end. The points (``iteration``, ``cpu_s``,
    ``wall_s``, ``train_s``: the clock's charged seconds, and :func:`coverage`) are in ``curve``;
    the logged gradient norms (``NORM_KEYS``) at every logging step in ``norms``.

    With one torch thread the process's CPU time is what an idle core would need, whatever else
    the machine runs.

    Arguments:
        budget_s: Training seconds on ``clock``.
        evaluations: Evaluations at budget_s / evaluations, 2·budget_s / evaluations, ...; or None.
        every_n_iterations: Evaluation period in iterations instead; or None.
        num_samples: Samples per evaluation (VEEGAN: 2,500).
        name: When set, each evaluation prints one line labelled with it.
        clock: ``"cpu"`` (the process's CPU time) or ``"wall"``.
        charge_first_iteration: False leaves the first iteration (a compile) out of the budget.
    """

    def __init__(
        self,
        budget_s: float = 60.0,
        evaluations: int | None = 30,
        every_n_iterations: int | None = None,
        num_samples: int = 2500,
        name: str = "",
        clock: Literal["cpu", "wall"] = "cpu",
        charge_first_iteration: bool = True,
    ):
        if not budget_s > 0:
            raise ValueError(f"budget_s must be > 0, got {budget_s!r}")
        for key, value in (("evaluations", evaluations), ("every_n_iterations", every_n_iterations)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be an integer >= 1 or None, got {value!r}")
        if (evaluations is None) == (every_n_iterations is None):
            raise ValueError("give one of evaluations and every_n_iterations")
        if clock not in ("cpu", "wall"):
            raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
        self.budget_s, self.evaluations, self.every_n_iterations = budget_s, evaluations, every_n_iterations
        self.num_samples, self.name, self.clock = num_samples, name, clock
        self.charge_first_iteration = charge_first_iteration
        self.curve, self.norms, self.metric, self.samples = [], [], None, None
        self.spent = {"train_s": 0.0, "cpu_s": 0.0, "wall_s": 0.0}
        self.first_iteration_s: float | None = None

    @property
    def cpu_s(self) -> float:
        return self.spent["cpu_s"]

    def setup(self, trainer, pl_module, stage: str) -> None:
        dm = trainer.datamodule
        if hasattr(dm, "centers"):
            self.metric = ModeCoverage(dm.centers, dm.sigma)
        self.start_wall = time.perf_counter()

    def _now(self) -> dict[str, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        return {"train_s": cpu if self.clock == "cpu" else wall, "cpu_s": cpu, "wall_s": wall}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = self._now()
        if self.first_iteration_s is None:
            self.first_iteration_s = end["wall_s"] - self._start["wall_s"]
            if not self.charge_first_iteration:
                return
        self.spent = {k: self.spent[k] + end[k] - self._start[k] for k in end}
        iteration, log_every = trainer.global_step, trainer.log_every_n_steps
        if log_every and iteration % log_every == 0:
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k in NORM_KEYS}
            if logged:
                self.norms.append({"iteration": iteration, "cpu_s": self.spent["cpu_s"]} | logged)
        spent, done = self.spent["train_s"], self.spent["train_s"] >= self.budget_s
        if self.evaluations is not None:
            due = spent >= self.budget_s * (len(self.curve) + 1) / self.evaluations
        else:
            due = iteration % self.every_n_iterations == 0
        if due or done or last_iteration(trainer, batch_idx):
            with torch.random.fork_rng():  # evaluating must not change the training run's noise
                self.evaluate(pl_module)
        trainer.should_stop = trainer.should_stop or done

    @torch.no_grad()
    def score(self, pl_module) -> dict:
        """The scores of one evaluation: :func:`coverage` of samples 0..num_samples-1 (2-D
        mixtures); a subclass scores other data (e.g. Stacked MNIST modes and KL)."""
        self.samples = pl_module.sample_indexed(torch.arange(self.num_samples)).cpu()
        return coverage(self.metric, self.samples)

    def evaluate(self, pl_module) -> None:
        point = {"iteration": pl_module.global_step, **self.spent} | self.score(pl_module)
        self.curve.append(point)
        if self.name and "counts" in point:
            m = len(point["counts"])
            print(
                f"[{self.name:>7}] {point['cpu_s']:6.1f} CPU s  iteration {point['iteration']:>6}  modes "
                f"{point['modes_veegan']}/{m} (PacGAN rule {point['modes_pacgan']}/{m})  "
                f"HQ {100 * point['hq']:5.1f}%  KL {point['kl']:.3f}",
                flush=True,
            )

    def wall_s(self) -> float:
        return time.perf_counter() - self.start_wall


def reached(point: dict, num_modes: int) -> dict[str, bool]:
    return {
        "all_modes": point["modes_pacgan"] >= num_modes,
        "hq80": point["hq"] >= 0.8,
        "hq90": point["hq"] >= 0.9,
        "kl05": point["kl"] <= 0.05,
    }


def summarise(curve: list[dict], num_modes: int, settle_s: float, norms: list[dict] = ()) -> dict:
    """A run's curve in numbers: the first evaluation reaching each of ``GOALS`` (CPU seconds and
    iteration, or None); the lowest PacGAN-rule mode count and the highest KL after ``settle_s``
    CPU seconds (before it every generator is still spreading out); the best HQ and KL; the final
    values (also at the top level); and the median teaching/GAN gradient-norm ratio after
    ``settle_s`` (None without both norms)."""
    out = {}
    for goal in GOALS:
        hit = next((p for p in curve if reached(p, num_modes)[goal]), None)
        out[goal] = None if hit is None else {"cpu_s": hit["cpu_s"], "iteration": hit["iteration"]}
    later = [p for p in curve if p["cpu_s"] >= settle_s] or curve[-1:]
    out["min_modes_pacgan"] = min(p["modes_pacgan"] for p in later)
    out["max_kl"] = max(p["kl"] for p in later)
    out["evaluations_counted"] = len(later)
    out["best_hq"] = max(p["hq"] for p in curve)
    out["best_kl"] = min(p["kl"] for p in curve)
    ratios = [
        p["train/grad_norm_teach"] / p["train/grad_norm_gan"]
        for p in norms
        if p["cpu_s"] >= settle_s and p.get("train/grad_norm_gan", 0) > 0 and "train/grad_norm_teach" in p
    ]
    out["teach_to_gan_median"] = statistics.median(ratios) if ratios else None
    out["final"] = {k: curve[-1][k] for k in ("iteration", "cpu_s", "modes_veegan", "modes_pacgan", "hq", "kl")}
    return out | out["final"]
