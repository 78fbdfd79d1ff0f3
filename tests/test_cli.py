"""Every config instantiates through the CLI; bad input is refused; a short fit writes outputs."""

import configparser
import importlib
import subprocess
import sys
import warnings

import pytest
from paths import EXPERIMENTS, ROOT
from pytorch_lightning.utilities._pytree import _tree_flatten

import lbt_lightning
from lbt_lightning.lightning import cli
from lbt_lightning.lightning.cli import lightning_main, main
from lbt_lightning.methods.base import GenerativeModule

TRAINER = str(EXPERIMENTS / "trainer.yaml")
OVERLAYS = {"trainer.yaml", "wandb.yaml", "fid.yaml"}  # added to a method config, not trained alone
CONFIGS = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if p.name not in OVERLAYS and p.parent != EXPERIMENTS)


def config_id(path):
    return str(path.relative_to(EXPERIMENTS))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_config_instantiates(config, tmp_cwd):
    cli = main(["--config", TRAINER, "--config", str(config)], run=False)
    assert isinstance(cli.model, GenerativeModule)
    assert cli.datamodule is not None


def test_unknown_class_path_is_refused(tmp_cwd, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "--config",
                TRAINER,
                "--config",
                str(EXPERIMENTS / "ring/gan.yaml"),
                "--model.init_args.generator.class_path",
                "lbt_lightning.networks.NoSuchGenerator",
            ],
            run=False,
        )
    assert "NoSuchGenerator" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, field",
    [
        ("--data.init_args.sigma=-0.1", "sigma"),
        ("--data.init_args.num_modes=0", "num_modes"),
        ("--model.init_args.clip_grad_norm=-1", "clip_grad_norm"),
    ],
)
def test_bad_value_is_refused_before_training(override, field, tmp_cwd, capsys):
    with pytest.raises((SystemExit, ValueError)) as info:
        main(["--config", TRAINER, "--config", str(EXPERIMENTS / "ring/gan.yaml"), override], run=False)
    message = str(info.value) + capsys.readouterr().err
    assert field in message


def test_grid_size_must_be_square(tmp_cwd, capsys):
    with pytest.raises((SystemExit, ValueError)) as info:
        main(
            ["--config", TRAINER, "--config", str(EXPERIMENTS / "grid/gan.yaml"), "--data.init_args.num_modes=10"],
            run=False,
        )
    assert "perfect square" in str(info.value) + capsys.readouterr().err


def test_short_fit_writes_metrics_and_scatter(tmp_cwd):
    main(
        [
            "fit",
            "--config",
            TRAINER,
            "--config",
            str(EXPERIMENTS / "ring/gan.yaml"),
            "--trainer.max_steps=20",
            "--trainer.enable_progress_bar=false",
            # replace the callback list: metrics every 20 iterations, a scatter every 10
            "--trainer.callbacks=lbt_lightning.callbacks.ModeCoverageCallback",
            "--trainer.callbacks.every_n_iterations=20",
            "--trainer.callbacks+=lbt_lightning.callbacks.ScatterPlot",
            "--trainer.callbacks.every_n_iterations=10",
        ],
    )
    runs = list((tmp_cwd / "runs").rglob("metrics.csv"))
    assert len(runs) == 1
    text = runs[0].read_text()
    assert "val/modes" in text and "val/hq" in text and "val/kl" in text
    pngs = sorted(p.name for p in (runs[0].parent / "samples").glob("*.png"))
    assert pngs == ["scatter_0000010.png", "scatter_0000020.png"]


def test_one_method_config_alone_trains_with_the_default_callbacks(tmp_cwd):
    cli = main(["fit", "--config", str(EXPERIMENTS / "ring/lbt.yaml"), "--trainer.max_steps=2",
                "--trainer.enable_progress_bar=false", "--model.init_args.unroll_steps=1"])  # fmt: skip
    assert cli.model.global_step == 2
    names = {type(cb).__name__ for cb in cli.trainer.callbacks}
    assert {"ModeCoverageCallback", "ScatterPlot", "IterationCheckpoint", "MetricsTable"} <= names
    assert list((tmp_cwd / "runs").rglob("scatter_0000002.png"))


def test_console_scripts_point_at_the_cli():
    """setup.cfg's console scripts (what an install puts on PATH) name the CLI's two functions."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = dict(line.replace(" ", "").split("=") for line in lines)
    assert scripts == {
        "lightning": "lbt_lightning.lightning.cli:lightning_main",
        "lbt": "lbt_lightning.lightning.cli:lbt_main",
    }
    module, _, name = scripts["lbt"].partition(":")
    assert getattr(importlib.import_module(module), name) is cli.lbt_main


def test_lbt_exits_zero_after_a_run(monkeypatch):
    """A console script exits with what its function returns: ``main`` returns the CLI object,
    which ``sys.exit`` would print and turn into status 1."""
    monkeypatch.setattr(cli, "main", lambda *args, **kwargs: object())
    assert cli.lbt_main() is None


@pytest.mark.slow  # 6 s for a process; test_first_hour checks the same help text in-process
def test_python_m_lists_subcommands():
    """One real process: ``python -m lbt_lightning --help`` (the console scripts call the same main)."""
    out = subprocess.run(
        [sys.executable, "-m", "lbt_lightning", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for sub in ("fit", "validate", "test", "predict"):
        assert sub in out


def test_lightnings_leafspec_warning_is_filtered_for_users():
    """Lightning's CombinedLoader builds torch's deprecated LeafSpec on every run; importing the
    package filters that FutureWarning also where setup.cfg's pytest filter does not apply."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # no pytest filters: what a user's process has
        _tree_flatten([1, 2])
        assert any("LeafSpec" in str(w.message) for w in caught)  # the warning this is about
        caught.clear()
        importlib.reload(lbt_lightning)  # installs the package's filter again
        _tree_flatten([1, 2])
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


@pytest.mark.parametrize("entry", [lightning_main, main])
def test_entry_points_list_subcommands(entry, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog", "--help"])
    with pytest.raises(SystemExit) as info:
        entry()  # both read sys.argv; main(["--help"]) too would make LightningCLI warn of two sources
    assert info.value.code == 0
    out = capsys.readouterr().out
    for sub in ("fit", "validate", "test", "predict"):
        assert sub in out


def test_lightning_unknown_command_is_explained(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning", "login"])
    with pytest.raises(SystemExit) as info:
        lightning_main()
    assert "lightning-sdk" in str(info.value.code)
