"""Command line: ``lightning``/``lbt``/``python -m lbt_lightning`` fit|validate|test|predict."""

import importlib
import importlib.util
import sys
from pathlib import Path

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.cli import LightningCLI

from lbt_lightning.callbacks.progress import without_progress_bars
from lbt_lightning.callbacks.sample_writer import SampleWriter
from lbt_lightning.callbacks.save_config import LoggerSaveConfigCallback
from lbt_lightning.lightning.checkpoint_io import CheckpointError, check_method, load_checkpoint_file
from lbt_lightning.methods.base import GenerativeModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# The one source of the Trainer defaults (experiments/trainer.yaml links to it); shipped in the package.
DEFAULT_CONFIG = Path(__file__).parents[1] / "trainer.yaml"
SAMPLE_WRITER = "lbt_lightning.callbacks.SampleWriter"


class LBTCLI(LightningCLI):
    """LightningCLI over every :class:`GenerativeModule` and LightningDataModule.

    Before the classes are built: a logger without ``save_dir`` gets ``trainer.default_root_dir``;
    ``enable_progress_bar: false`` drops listed progress bars (Lightning would refuse them);
    ``predict`` without a :class:`~lbt_lightning.callbacks.SampleWriter` gets one with its defaults.
    """

    def _parse_ckpt_path(self) -> None:
        # Lightning loads --ckpt_path here, before anything is built, and puts the checkpoint's model
        # config in place of the given one: a bad file would end in a torch.load traceback, and
        # another method's checkpoint would silently train that method.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and _is_local_file_path(str(path)):
            checkpoint = load_checkpoint_file(path, map_location="cpu")
            check_method(checkpoint, str(self.config[subcommand].model.class_path), path)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        trainer = self._get(self.config, "trainer")
        root = trainer.get("default_root_dir") or "."
        for logger in _as_list(trainer.get("logger")):
            init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
            if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
                init_args.save_dir = root
        if trainer.get("enable_progress_bar") is False:  # the listed bar would make Lightning refuse
            trainer.callbacks = without_progress_bars(trainer.get("callbacks"))
        if self.subcommand == "predict":
            callbacks = _as_list(trainer.get("callbacks"))
            if not any(_is_subclass(c, SampleWriter) for c in callbacks):
                trainer.callbacks = [*callbacks, Namespace(class_path=SAMPLE_WRITER, init_args=Namespace())]
            if self.config.predict.get("return_predictions") is None:  # SampleWriter keeps the samples
                self.config.predict.return_predictions = False


def _is_local_file_path(ckpt_path: str) -> bool:
    """Not one of Lightning's ckpt_path keywords ("last", "best", "hpc", "registry[:name]") nor a URL."""
    return ckpt_path not in ("last", "best", "hpc") and not ckpt_path.startswith("registry") and "://" not in ckpt_path


def _is_subclass(config, cls: type) -> bool:
    """Whether a callback config (``class_path`` namespace) or object is a ``cls``."""
    if not isinstance(config, Namespace):
        return isinstance(config, cls)
    module, _, name = str(config.get("class_path")).rpartition(".")
    found = getattr(importlib.import_module(module), name, None) if module else None
    return isinstance(found, type) and issubclass(found, cls)


def _as_list(value) -> list:
    return [] if value is None or isinstance(value, bool) else value if isinstance(value, list) else [value]


def main(args: list[str] | None = None, run: bool = True) -> LBTCLI:
    """Run the CLI (``args`` default to ``sys.argv[1:]``); ``run=False`` only instantiates."""
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
    try:
        return _cli(defaults, args, run)
    except CheckpointError as error:  # e.g. a truncated --ckpt_path: the file and the fault, not a traceback
        sys.exit(f"error: {error}")


def _cli(defaults: dict, args: list[str] | None, run: bool) -> LBTCLI:
    return LBTCLI(
        GenerativeModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LoggerSaveConfigCallback,  # also uploads the config to W&B runs
        save_config_kwargs={"overwrite": True},
        parser_kwargs={sub: defaults for sub in SUBCOMMANDS} if run else defaults,
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
