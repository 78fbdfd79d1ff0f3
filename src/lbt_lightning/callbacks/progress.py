"""Progress: Lightning's Rich bar with the iteration counter, and a table of final metrics."""

import importlib
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table


class IterationProgressBar(RichProgressBar):
    """Lightning's :class:`~pytorch_lightning.callbacks.RichProgressBar` plus ``iteration``
    (``trainer.global_step``).

    The bar already shows every value logged with ``prog_bar=True``: the methods' ``train/*``
    losses and the callbacks' latest ``val/modes``, ``val/hq``, ``val/kl``. The batch counter
    restarts at 0 when a run resumes from a checkpoint; ``global_step`` does not.
    """

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        return {"iteration": str(trainer.global_step), **items}  # a str escapes the bar's ".3f"


class MetricsTable(pl.Callback):
    """At the end of ``fit``, prints the final value of every logged metric as a table, with the
    iteration reached and the mean wall-clock time per iteration (evaluation callbacks included).

    Arguments:
        prefixes: Only metrics whose name starts with one of these are shown.
    """

    def __init__(self, prefixes: tuple[str, ...] = ("train/", "val/")):
        self.prefixes = tuple(prefixes)
        self._start: float | None = None
        self._first_iteration = 0
        self.rows: dict[str, str] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._first_iteration = trainer.global_step

    @rank_zero_only
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # teardown rather than on_fit_end: after the progress bar (listed earlier) has printed its last state
        if stage != "fit" or self._start is None:
            return
        iteration = trainer.global_step
        ran = iteration - self._first_iteration
        self.rows = {"iteration": str(iteration)}
        if ran > 0:
            self.rows["s/iteration"] = f"{(time.perf_counter() - self._start) / ran:.4f}"
        self._start = None
        for name, value in sorted(trainer.callback_metrics.items()):
            if name.startswith(self.prefixes):
                self.rows[name] = f"{float(value):.4g}"
        table = Table(title=f"{type(pl_module).__name__}: final metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in self.rows.items():
            table.add_row(name, value)
        Console().print(table)


def without_progress_bars(callbacks):
    """The trainer's callback configs (``class_path`` namespaces or objects) minus progress bars.

    ``experiments/trainer.yaml`` lists :class:`IterationProgressBar`; Lightning refuses a listed
    bar when ``enable_progress_bar`` is false, which the CLI takes as "no bar" instead.
    """
    if callbacks is None:
        return None
    kept = []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        cls = type(callback)
        class_path = callback.get("class_path") if hasattr(callback, "get") else None
        if isinstance(class_path, str):
            module, _, name = class_path.rpartition(".")
            cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, ProgressBar)):
            kept.append(callback)
    return kept
