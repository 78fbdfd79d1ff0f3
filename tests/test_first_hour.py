"""What a new user meets first: their own images, one-line errors before training, output folders, help."""

import sys

import pytest
import torch
from paths import EXPERIMENTS
from test_images import write_image_folder

from lbt_lightning.data import ImageFolderDataModule
from lbt_lightning.estimators import DensityEstimator
from lbt_lightning.lightning import cli as cli_module
from lbt_lightning.lightning.cli import main
from lbt_lightning.lightning.errors import ConfigError, one_line

IMAGES_SMALL = [  # the configs' structure and data handling as shipped; narrow networks keep a fit short
    "--model.init_args.generator.init_args.width=32",
    "--model.init_args.discriminator.init_args.width=8",
    "--data.init_args.num_workers=0",
    "--trainer.enable_progress_bar=false",
]
VAE_SMALL = ["--model.init_args.estimator.init_args.hidden=[16]", "--model.init_args.estimator.init_args.latent_dim=4"]
RING = ["fit", "--config", str(EXPERIMENTS / "ring/lbt_gan.yaml"), "--trainer.enable_progress_bar=false"]


def error_line(capsys, args) -> str:
    """What the user sees for a command that fails before training: the one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    code = exit_info.value.code
    text = code if isinstance(code, str) else capsys.readouterr().err
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("method", ["gan", "lbt_gan"])
def test_own_images_train_with_the_documented_command(method, tmp_cwd):
    root = write_image_folder(tmp_cwd / "my_images", n=64, size=(40, 48))
    args = ["fit", "--config", str(EXPERIMENTS / f"images/{method}.yaml"), f"--data.init_args.root={root}"]
    args += [*IMAGES_SMALL, "--trainer.max_steps=2", "--data.init_args.batch_size=16"]
    if method == "lbt_gan":
        args += [*VAE_SMALL, "--model.init_args.warmup_iterations=1"]
    cli = main(args)
    assert cli.trainer.global_step == 2 and cli.datamodule.holdout == 0 and len(cli.datamodule.dataset) == 64
    run = tmp_cwd / "runs/lightning_logs/version_0"
    assert (run / "checkpoints/last.ckpt").is_file() and (run / "samples/grid_0000002.png").is_file()
    if method == "lbt_gan":
        assert "train/teach_loss" in (run / "metrics.csv").read_text()


def test_the_fid_overlay_adds_fid_to_the_image_configs(tmp_cwd):
    args = ["--config", str(EXPERIMENTS / "images/lbt_gan.yaml"), "--config", str(EXPERIMENTS / "images/fid.yaml")]
    built = main(args, run=False)
    names = [type(c).__name__ for c in built.trainer.callbacks]
    assert "ImageQuality" in names and "SampleGrid" in names
    assert "ImageQuality" not in [type(c).__name__ for c in main(args[:2], run=False).trainer.callbacks]


def test_image_workers_default_to_at_most_the_cpus(monkeypatch):
    monkeypatch.setattr("lbt_lightning.data.images.available_cpus", lambda: 2)
    assert ImageFolderDataModule("x").num_workers == 2
    monkeypatch.setattr("lbt_lightning.data.images.available_cpus", lambda: 16)
    assert ImageFolderDataModule("x").num_workers == 4


def test_a_warmup_as_long_as_the_run_is_warned_about(tmp_cwd):
    small = [f"--model.init_args.{m}.init_args.hidden=[16]" for m in ("generator", "estimator", "discriminator")]
    with pytest.warns(UserWarning, match="warmup_iterations=5 is at least this fit's length \\(3 iterations\\)"):
        main([*RING, *small, "--model.init_args.warmup_iterations=5", "--trainer.max_steps=3"])


# ---- errors before the Trainer starts, on one line -------------------------------------------------


def test_a_mistyped_argument_gets_the_closest_names(capsys):
    line = error_line(capsys, [*RING, "--model.init_args.estimator_step=3"])
    assert line.startswith("error: model.init_args.estimator_step: LBTGAN has no argument 'estimator_step'")
    assert "did you mean estimator_steps" in line


def test_a_mistyped_key_in_a_config_file_gets_the_closest_names(capsys, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  init_args:\n    estimator_step: 3\n")
    line = error_line(capsys, [*RING, "--config", str(config)])
    assert "estimator_step" in line and "did you mean estimator_steps" in line


def test_a_mistyped_class_gets_the_closest_class(capsys):
    line = error_line(capsys, [*RING, "--model.class_path=lbt_lightning.methods.LBTGan"])
    assert (
        line
        == "error: model: no class lbt_lightning.methods.LBTGan (did you mean lbt_lightning.methods.LBTGAN or LBT?)"
    )


def test_a_negative_learning_rate_is_refused_before_training(capsys, tmp_cwd):
    line = error_line(capsys, [*RING, "--model.init_args.generator_optimizer.init_args.lr=-0.001"])
    assert line.startswith("error: model.init_args.generator_optimizer:") and "-0.001" in line
    assert not (tmp_cwd / "runs").exists()  # nothing written


def test_a_missing_image_folder_is_refused_before_training(capsys, tmp_cwd):
    args = ["fit", "--config", str(EXPERIMENTS / "images/gan.yaml"), "--data.init_args.root=nowhere", *IMAGES_SMALL]
    line = error_line(capsys, args)
    assert line == "error: data.init_args.root='nowhere' is not a folder; point root at a folder of images"
    assert not (tmp_cwd / "runs").exists()


def test_a_batch_larger_than_the_folder_says_what_fits(capsys, tmp_cwd):
    root = write_image_folder(tmp_cwd / "few", n=12)
    args = ["fit", "--config", str(EXPERIMENTS / "images/gan.yaml"), f"--data.init_args.root={root}", *IMAGES_SMALL]
    line = error_line(capsys, args)  # the config's batch is 64
    assert "batch_size=64 is larger than the data set (12 images)" in line and "at most 12" in line


def test_a_holdout_that_leaves_nothing_says_what_fits(capsys, tmp_cwd):
    root = write_image_folder(tmp_cwd / "few", n=12)
    args = ["fit", "--config", str(EXPERIMENTS / "celeba/gan.yaml"), f"--data.init_args.root={root}", *IMAGES_SMALL]
    line = error_line(capsys, args)  # the CelebA config holds out 5,000
    assert "holdout=5000 leaves none of the 12 images" in line and "holdout to at most 11" in line


class PerDimension(DensityEstimator):
    """A log_prob that forgot to sum over the event dimensions: shape (B, 2)."""

    def __init__(self):
        super().__init__()
        self.mean = torch.nn.Parameter(torch.zeros(2))

    def log_prob(self, x):
        return torch.distributions.Normal(self.mean, 1.0).log_prob(x)


def test_an_estimator_with_a_wrong_output_shape_is_refused(capsys):
    estimator = f"--model.init_args.estimator={__name__}.PerDimension"
    line = error_line(capsys, [*RING, estimator, "--trainer.max_steps=1"])
    assert "estimator PerDimension.log_prob returned shape (2, 2) for a batch of 2" in line


def test_the_full_traceback_on_request(monkeypatch):
    monkeypatch.setenv("LBT_TRACEBACK", "1")
    with pytest.raises(ConfigError, match="learning rate"):
        main([*RING, "--model.init_args.generator_optimizer.init_args.lr=-0.001"])


def test_one_line_keeps_an_unknown_report_readable():
    assert one_line("Parser key \"trainer.max_steps\":\n  Expected a <class 'int'>. Got value: abc") == (
        "trainer.max_steps: Expected a <class 'int'>. Got value: abc"
    )
    assert one_line("unrecognized arguments: --trainer.max_stepz 3", ["--trainer.max_steps"]) == (
        "--trainer.max_stepz: no such option (did you mean --trainer.max_steps?)"
    )
    assert one_line("Group 'trainer' does not accept option 'max_step'", ["--trainer.max_steps", "--model"]) == (
        "trainer.max_step: no such option (did you mean trainer.max_steps?)"
    )


def test_wandb_without_a_key_points_at_offline_mode(monkeypatch):
    import wandb.errors

    def no_key(*args, **kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty). call wandb.login(key=[your_api_key])")

    monkeypatch.setattr(cli_module, "_cli", no_key)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit"])
    assert "WANDB_MODE=offline" in str(exit_info.value.code) and "\n" not in str(exit_info.value.code)


# ---- folders and help -------------------------------------------------------------------------------------


def test_validate_writes_beside_the_checkpoints_run(tmp_cwd, capsys):
    small = [f"--model.init_args.{m}.init_args.hidden=[16]" for m in ("generator", "estimator", "discriminator")]
    main([*RING, *small, "--trainer.max_steps=2"])
    run = tmp_cwd / "runs/lightning_logs/version_0"
    args = ["--config", str(run / "config.yaml"), f"--ckpt_path={run / 'checkpoints/last.ckpt'}"]
    main(["validate", *args, "--trainer.enable_progress_bar=false"])
    main(["validate", *args, "--trainer.enable_progress_bar=false"])
    assert sorted(p.name for p in (tmp_cwd / "runs/lightning_logs").iterdir()) == ["version_0"]
    assert (run / "validate/metrics.csv").is_file() and (run / "validate_1/metrics.csv").is_file()
    assert f"validate: logs and outputs in {run / 'validate_1'}" in capsys.readouterr().out


def test_a_fit_that_fails_before_its_first_iteration_leaves_no_folder(tmp_cwd, monkeypatch):
    from lbt_lightning.methods import LBTGAN

    def fail(self):
        raise RuntimeError("broken before the first iteration")

    monkeypatch.setattr(LBTGAN, "on_train_start", fail)
    small = [f"--model.init_args.{m}.init_args.hidden=[16]" for m in ("generator", "estimator", "discriminator")]
    with pytest.raises(RuntimeError, match="broken"):
        main([*RING, *small, "--trainer.max_steps=2"])
    assert list((tmp_cwd / "runs/lightning_logs").glob("version_*")) == []


def test_help_names_the_program_and_shows_an_example(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/site-packages/lbt_lightning/__main__.py"])
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert out.startswith("usage: python -m lbt_lightning")
    assert "Example: python -m lbt_lightning fit --config experiments/" in out and "docs/usage.md" in out
