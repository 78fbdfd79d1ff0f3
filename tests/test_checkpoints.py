"""Checkpoints a user can load, named by iteration; logs under default_root_dir; trainer defaults from one file."""

import sys

import pytest
import torch
import yaml
from paths import EXPERIMENTS
from trainers import quiet_trainer

from lbt_lightning.data import RingDataModule
from lbt_lightning.lightning import cli
from lbt_lightning.lightning.checkpoint_io import load_checkpoint_file
from lbt_lightning.lightning.cli import main
from lbt_lightning.methods import GAN, LBT, LBTGAN, UnrolledGAN

# Narrow networks and short unrolls keep each fit at a second or two; the configs are otherwise as shipped.
SMALL = {
    "gan": ["--model.init_args.discriminator.init_args.hidden=[16]"],
    "lbt": ["--model.init_args.estimator.init_args.hidden=[16]", "--model.init_args.unroll_steps=2"],
    "lbt_gan": [
        "--model.init_args.estimator.init_args.hidden=[16]",
        "--model.init_args.discriminator.init_args.hidden=[16]",
        "--model.init_args.unroll_steps=2",
    ],
    "unrolled_gan": ["--model.init_args.discriminator.init_args.hidden=[16]", "--model.init_args.unroll_steps=2"],
}
CLASSES = {"gan": GAN, "lbt": LBT, "lbt_gan": LBTGAN, "unrolled_gan": UnrolledGAN}


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    """The CLI runs in-process with explicit args; pytest's own argv would only trigger a warning."""
    monkeypatch.setattr(sys, "argv", ["lightning"])


def fit(method: str, *extra: str, iterations: int = 3):
    args = ["fit", "--config", str(EXPERIMENTS / f"ring/{method}.yaml"), *SMALL[method]]
    args += [f"--trainer.max_steps={iterations}", "--data.init_args.batch_size=32"]
    args += ["--model.init_args.generator.init_args.hidden=[16]", "--trainer.enable_progress_bar=false"]
    return main([*args, *extra])


@pytest.mark.parametrize("method", sorted(CLASSES))
def test_load_from_checkpoint_gives_the_same_samples(method, tmp_cwd):
    trained = fit(method).model
    folder = tmp_cwd / "runs/lightning_logs/version_0/checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=3.ckpt"]
    loaded = CLASSES[method].load_from_checkpoint(folder / "last.ckpt")
    assert type(loaded) is type(trained) and load_checkpoint_file(folder / "last.ckpt")["global_step"] == 3
    assert loaded.hparams["_class_path"] == f"lbt_lightning.methods.{CLASSES[method].__name__}"
    trained.eval(), loaded.eval()
    with torch.random.fork_rng():
        torch.manual_seed(7)
        expected = trained.sample(16)
        torch.manual_seed(7)
        got = loaded.sample(16)
    assert torch.equal(got, expected)
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_loaded_model_trains_on_and_saves_a_loadable_checkpoint(tmp_cwd):
    fit("gan", iterations=1)
    loaded = GAN.load_from_checkpoint(next(tmp_cwd.rglob("last.ckpt")))
    assert "_instantiator" in loaded.hparams  # the saved config, not module objects
    trainer = quiet_trainer(1)
    trainer.fit(loaded, RingDataModule(batch_size=32))
    trainer.save_checkpoint(tmp_cwd / "again.ckpt")
    again = GAN.load_from_checkpoint(tmp_cwd / "again.ckpt")
    assert load_checkpoint_file(tmp_cwd / "again.ckpt")["global_step"] == 1  # a new fit counts from 0
    assert all(torch.equal(again.state_dict()[k], v) for k, v in loaded.state_dict().items())


def test_python_built_module_keeps_plain_hyperparameters():
    from lbt_lightning.networks import MLPDiscriminator, MLPGenerator

    model = GAN(MLPGenerator(hidden=[8]), MLPDiscriminator(hidden=[8]), clip_grad_norm=1.0)
    assert dict(model.hparams) == {"clip_grad_norm": 1.0, "max_consecutive_skips": 10}


def test_default_root_dir_is_honoured_unless_a_logger_save_dir_is_given(tmp_cwd):
    ring = ["--config", str(EXPERIMENTS / "ring/gan.yaml")]
    assert main(ring, run=False).trainer.log_dir == "runs/lightning_logs/version_0"
    moved = main([*ring, "--trainer.default_root_dir=out"], run=False)
    assert moved.trainer.log_dir == "out/lightning_logs/version_0"
    explicit = main([*ring, "--trainer.default_root_dir=out", "--trainer.logger.init_args.save_dir=logs"], run=False)
    assert explicit.trainer.log_dir == "logs/lightning_logs/version_0"


def test_one_source_of_trainer_defaults():
    """The CLI reads the packaged trainer.yaml; experiments/trainer.yaml is that file."""
    assert (EXPERIMENTS / "trainer.yaml").resolve() == cli.DEFAULT_CONFIG.resolve()
    defaults = yaml.safe_load(cli.DEFAULT_CONFIG.read_text())
    built = main(["--config", str(EXPERIMENTS / "ring/gan.yaml")], run=False)
    assert built.trainer.max_steps == defaults["trainer"]["max_steps"]
    listed = [c["class_path"].rsplit(".", 1)[1] for c in defaults["trainer"]["callbacks"]]
    assert [type(c).__name__ for c in built.trainer.callbacks if type(c).__name__ in listed] == sorted(
        listed,
        key=lambda name: name == "IterationCheckpoint",  # Lightning moves checkpoint callbacks last
    )
