"""Command line: ``lightning``/``lbt``/``python -m lbt_lightning`` fit|validate|test|predict."""

import importlib.util
import sys

import pytorch_lightning as pl
from jsonargparse import Namespace, lazy_instance
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import CSVLogger

from lbt_lightning.callbacks.progress import without_progress_bars
from lbt_lightning.callbacks.save_config import LoggerSaveConfigCallback
from lbt_lightning.methods.base import GenerativeModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")


# What experiments/trainer.yaml states, so that a method config alone also trains and evaluates.
TRAINER_DEFAULTS = {
    "max_epochs": 1,  # the data streams are endless: the length is limit_train_batches iterations
    "limit_train_batches": 2000,
}
DEFAULT_CALLBACKS = [
    ("lbt_lightning.callbacks.ModeCoverageCallback", {"every_n_iterations": 500}),
    ("lbt_lightning.callbacks.ScatterPlot", {"every_n_iterations": 500}),
    ("lbt_lightning.callbacks.IterationCheckpoint", {"every_n_iterations": 500, "save_last": True}),
    ("lbt_lightning.callbacks.IterationProgressBar", {}),
    ("lbt_lightning.callbacks.MetricsTable", {}),
]


class LBTCLI(LightningCLI):
    """LightningCLI over every :class:`GenerativeModule` and LightningDataModule."""

    def before_instantiate_classes(self) -> None:
        trainer = self._get(self.config, "trainer")
        if trainer.get("callbacks") is None:
            trainer.callbacks = [Namespace(class_path=c, init_args=Namespace(**a)) for c, a in DEFAULT_CALLBACKS]
        if trainer.get("enable_progress_bar") is False:  # the listed bar would make Lightning refuse
            trainer.callbacks = without_progress_bars(trainer.get("callbacks"))


def main(args: list[str] | None = None, run: bool = True) -> LBTCLI:
    """Run the CLI (``args`` default to ``sys.argv[1:]``); ``run=False`` only instantiates."""
    return LBTCLI(
        GenerativeModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LoggerSaveConfigCallback,  # also uploads the config to W&B runs
        save_config_kwargs={"overwrite": True},
        trainer_defaults={**TRAINER_DEFAULTS, "logger": lazy_instance(CSVLogger, save_dir="runs")},
        seed_everything_default=12345,  # PAPER.md §2.2: the authors' seed
        args=args,
        run=run,
    )


def lightning_main() -> None:
    """The ``lightning`` command: our CLI for fit/validate/test/predict and ``--help``; anything
    else goes to ``lightning_sdk``'s CLI when installed (as Lightning 2.3-2.5 did)."""
    argv = sys.argv[1:]
    if not argv or argv[0] in SUBCOMMANDS or argv[0].startswith("-"):
        main()
        return
    if importlib.util.find_spec("lightning_sdk") is not None:
        from lightning_sdk.cli.entrypoint import main_cli

        sys.exit(main_cli())
    sys.exit(
        f"lightning: unknown command {argv[0]!r}. This `lightning` command (from lbt-lightning) "
        f"runs {', '.join(SUBCOMMANDS)}; for Lightning cloud commands install lightning-sdk."
    )
