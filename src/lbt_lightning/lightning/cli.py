"""Command line: ``lightning``/``lbt``/``python -m lbt_lightning`` fit|validate|test|predict."""

import importlib
import importlib.util
import inspect
import shutil
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import Namespace
from pytorch_lightning.cli import LightningCLI

from lbt_lightning.callbacks.progress import without_progress_bars
from lbt_lightning.callbacks.sample_writer import SampleWriter
from lbt_lightning.callbacks.save_config import LoggerSaveConfigCallback
from lbt_lightning.lightning.checkpoint_io import CheckpointError, check_method, load_checkpoint_file
from lbt_lightning.lightning.errors import (
    ConfigError,
    OneLineErrorParser,
    constructor_parameters,
    field_errors,
    full_errors,
)
from lbt_lightning.methods.base import GenerativeModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# The one source of the Trainer defaults (experiments/trainer.yaml links to it); shipped in the package.
DEFAULT_CONFIG = Path(__file__).parents[1] / "trainer.yaml"
SAMPLE_WRITER = "lbt_lightning.callbacks.SampleWriter"
DOCS = "docs/usage.md (training), docs/evaluation.md (validate, test, predict) in the repository"
EXAMPLE = "{prog} fit --config experiments/ring/lbt_gan.yaml --trainer.max_steps 300"


class LBTCLI(LightningCLI):
    """LightningCLI over every :class:`GenerativeModule` and LightningDataModule.

    Before the classes are built: a logger without ``save_dir`` gets ``trainer.default_root_dir``;
    ``enable_progress_bar: false`` drops listed progress bars (Lightning would refuse them);
    ``predict`` without a :class:`~lbt_lightning.callbacks.SampleWriter` gets one with its defaults.
    Before ``fit`` starts the Trainer: the optimizers are built, the data module's ``check()``
    runs (e.g. the image folder and its size against the batch), and the networks are probed on
    two samples; a failure is one line naming the field.
    """

    def instantiate_classes(self) -> None:
        with field_errors(""):
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            trainer = self.trainer
            if subcommand == "fit" and trainer.global_step == 0 and trainer.is_global_zero:
                for folder in getattr(self, "_new_run_folders", []):  # a fit that never trained leaves none
                    _remove_if_empty(folder)
            raise
        if subcommand != "fit" and self.trainer.is_global_zero and self.trainer.loggers:
            logger = self.trainer.loggers[0]
            print(f"{subcommand}: logs and outputs in {getattr(logger, 'log_dir', None) or logger.save_dir}")

    def before_fit(self) -> None:
        folders = [getattr(logger, "log_dir", None) for logger in self.trainer.loggers]
        self._new_run_folders = [Path(f) for f in folders if f and not Path(f).exists()]
        with field_errors("model.init_args."):
            self.model.configure_optimizers()
        check = getattr(self.datamodule, "check", None)
        if callable(check) and not getattr(self.datamodule, "download", False):  # prepare_data downloads
            with field_errors("data.init_args."):
                check()
        with field_errors("model: "), torch.random.fork_rng(devices=[]):
            self.model._check_shapes(self.datamodule)

    def _parse_ckpt_path(self) -> None:
        # Lightning loads --ckpt_path here, before anything is built, and puts the checkpoint's model
        # config in place of the given one: a bad file would end in a torch.load traceback, and
        # another method's checkpoint would silently train that method.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        given = None
        if path and _is_local_file_path(str(path)):
            checkpoint = load_checkpoint_file(path, map_location="cpu")
            check_method(checkpoint, str(self.config[subcommand].model.class_path), path)
            if subcommand == "fit" and checkpoint.get("hyper_parameters", {}).get("_instantiator"):
                given = _flat(self.config[subcommand].model)
        super()._parse_ckpt_path()
        if given is not None:  # a resumed fit trains the checkpoint's model: say so if it is not the one given
            restored = _flat(self.config[subcommand].model)
            differing = {
                k: v for k, v in given.items() if k in restored and restored[k] != v and not _is_default(given, k)
            }
            if differing:
                (key, value), others = next(iter(differing.items())), list(differing)[1:]
                more = f" (and {len(others)} more: {', '.join(others)})" if others else ""
                raise CheckpointError(
                    f"model.{key}: {value!r} given, but checkpoint {str(path)!r} was trained with "
                    f"{restored[key]!r}{more}; a resumed fit keeps the checkpoint's model arguments. "
                    "Drop the argument to resume, or leave out --ckpt_path to train a new model with it"
                )

    def before_instantiate_classes(self) -> None:
        trainer = self._get(self.config, "trainer")
        root = trainer.get("default_root_dir") or "."
        if self.subcommand in ("validate", "test", "predict"):  # write beside the checkpoint's run
            run = _run_folder(self.config[self.subcommand].get("ckpt_path"))
            for logger in _as_list(trainer.get("logger")) if run is not None else []:
                init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
                file_logger = str(logger.get("class_path", "")).endswith(("CSVLogger", "TensorBoardLogger"))
                if file_logger and init_args is not None and init_args.get("version") is None:
                    init_args.save_dir, init_args.name = str(run), ""
                    init_args.version = _free_name(run, self.subcommand)
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


def _flat(config, prefix: str = "") -> dict:
    """A model config (nested namespaces and dicts) as ``{"init_args.gan_weight": 0.1, ...}``."""
    if isinstance(config, Namespace):
        config = config.as_dict()
    if not isinstance(config, dict):
        return {prefix: config}
    out = {}
    for key, value in config.items():
        if key != "_instantiator":
            out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _run_folder(ckpt_path) -> Path | None:
    """``<run>`` for a checkpoint at ``<run>/checkpoints/<name>.ckpt`` written by a fit, else None."""
    if not ckpt_path or not _is_local_file_path(str(ckpt_path)):
        return None
    path = Path(ckpt_path)
    return path.parents[1] if path.parent.name == "checkpoints" and path.is_file() else None


def _free_name(folder: Path, name: str) -> str:
    """``name``, or ``name_1``, ``name_2``, ... whichever does not exist in ``folder`` yet."""
    candidates = (name if i == 0 else f"{name}_{i}" for i in range(10_000))
    return next(c for c in candidates if not (folder / c).exists())


def _remove_if_empty(folder: Path) -> None:
    """Remove a run folder that holds nothing but the files written before the first iteration."""
    before_training = {"config.yaml", "hparams.yaml", "metrics.csv", "events.out.tfevents"}
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    if folder.is_dir() and all(p.name in before_training or p.name.startswith("events.out") for p in files):
        shutil.rmtree(folder, ignore_errors=True)


def _is_default(flat: dict, key: str) -> bool:
    """Whether ``flat[key]`` (``"init_args.a.init_args.b"``) is the default of its class's argument,
    the class being the nearest ``class_path`` above it: a value nobody chose, which a resumed fit
    may take from the checkpoint without saying so."""
    parts = key.split(".")
    if len(parts) < 2 or parts[-2] != "init_args":
        return False
    owner = flat.get(".".join([*parts[:-2], "class_path"]))
    parameter = constructor_parameters(owner).get(parts[-1])
    return parameter is not None and parameter.default is not inspect.Parameter.empty and parameter.default == flat[key]


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
    """Run the CLI (``args`` default to ``sys.argv[1:]``); ``run=False`` only instantiates.
    A bad config or checkpoint ends the program with one line, ``error: <field>: <problem>``
    (``LBT_TRACEBACK=1`` raises it with its traceback instead)."""
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
    try:
        return _cli(defaults, args, run)
    except (CheckpointError, ConfigError) as error:  # e.g. a truncated --ckpt_path, a negative lr
        if full_errors():
            raise
        sys.exit(f"error: {error}")
    except Exception as error:
        if type(error).__module__.startswith("wandb") and "api" in str(error).lower() and not full_errors():
            sys.exit(
                f"error: trainer.logger (WandbLogger): {str(error).splitlines()[0]} (run `wandb login`, "
                "or set WANDB_MODE=offline to log to local files without an account)"
            )
        raise


def _program() -> str:
    """The name the user typed: ``lbt``, ``lightning`` or ``python -m lbt_lightning``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "lbt"
    return "python -m lbt_lightning" if name in ("__main__.py", "-m", "-c", "") else name


def _cli(defaults: dict, args: list[str] | None, run: bool) -> LBTCLI:
    prog = _program()
    main_kwargs = {
        "prog": prog,
        "description": "Learning by Teaching and its baselines: fit, validate, test or predict with a config. "
        f"Example: {EXAMPLE.format(prog=prog)}",
        "epilog": f"Configs: experiments/<data>/<method>.yaml. Docs: {DOCS}.",
    }
    return LBTCLI(
        GenerativeModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LoggerSaveConfigCallback,  # also uploads the config to W&B runs
        save_config_kwargs={"overwrite": True},
        parser_class=OneLineErrorParser,
        parser_kwargs=main_kwargs | {sub: defaults for sub in SUBCOMMANDS} if run else defaults,
        args=args,
        run=run,
    )


def lbt_main() -> None:
    """The ``lbt`` command (exit status 0 after a run; ``main`` returns the CLI object)."""
    main()


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
