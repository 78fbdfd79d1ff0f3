"""Base callback that evaluates every N iterations and at the last iteration of fit."""

from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger


class EveryNIterations(pl.Callback):
    """Calls ``evaluate(trainer, pl_module, iteration)`` every ``every_n_iterations`` (of
    ``trainer.global_step``, which counts iterations) and at the last iteration of fit, inside a
    forked RNG so that evaluating leaves the training run's random stream untouched.

    Arguments:
        every_n_iterations: Evaluation period in iterations (generator updates), >= 1.
    """

    def __init__(self, every_n_iterations: int = 500):
        if not isinstance(every_n_iterations, int) or every_n_iterations < 1:
            raise ValueError(f"every_n_iterations must be an integer >= 1, got {every_n_iterations!r}")
        self.every_n_iterations = every_n_iterations

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        iteration = trainer.global_step
        if iteration % self.every_n_iterations == 0 or last_iteration(trainer, batch_idx):
            devices = [pl_module.device] if pl_module.device.type == "cuda" else []
            # Evaluation draws its own noise: switching a callback on or off must not change training.
            with torch.random.fork_rng(devices=devices):
                self.evaluate(trainer, pl_module, iteration)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, iteration: int) -> None:
        raise NotImplementedError


def last_iteration(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the iteration that has just ended is the fit's last: ``max_steps`` reached, the
    epochs' batches done (``limit_train_batches``), or a stop requested."""
    steps_done = trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step
    epochs_done = (
        trainer.max_epochs is not None
        and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        and batch_idx + 1 >= trainer.num_training_batches
    )
    return steps_done or epochs_done or trainer.should_stop


def output_dir(trainer: pl.Trainer, name: str) -> Path:
    """``<log dir>/<name>``, created; the log dir is the first logger's, else default_root_dir.

    The logger is read directly: ``trainer.log_dir`` broadcasts from rank 0, a collective call
    that hangs DDP when, as here, only rank 0 writes files."""
    logger = trainer.loggers[0] if trainer.loggers else None
    root = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_metrics(trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float], step: int) -> None:
    """Write evaluation scalars to every logger at ``step`` (whatever ``log_every_n_steps`` is)
    and show them in the progress bar and ``trainer.callback_metrics``."""
    pl_module.log_dict({k: float(v) for k, v in values.items()}, prog_bar=True, logger=False)
    for logger in trainer.loggers:
        logger.log_metrics(dict(values), step=step)


def log_figure(trainer: pl.Trainer, key: str, fig: Figure, path: Path, step: int) -> None:
    """Save ``fig`` as PNG at ``path`` and send it to every logger that takes pictures:
    W&B (``log_image``) and TensorBoard (``add_figure``); CSV keeps only the PNG."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, fig, global_step=step, close=False)
