"""The one evaluation sampling path (``sample_indexed``): it leaves the model alone, sample i depends
only on i, and the fit-time metrics of an iteration are ``lightning validate``'s on its checkpoint."""

import copy
import sys

import pytest
import pytorch_lightning as pl
import torch
from paths import EXPERIMENTS
from trainers import quiet_trainer

from lbt_lightning.callbacks import IterationCheckpoint, ModeCoverageCallback, ScatterPlot
from lbt_lightning.data import GridDataModule
from lbt_lightning.data.evaluation import SAMPLE_CHUNK
from lbt_lightning.lightning.cli import main
from lbt_lightning.methods import GAN, LBTGAN
from lbt_lightning.networks import MaxoutDiscriminator, PacGANGenerator


def pacgan_gan() -> GAN:
    return GAN(PacGANGenerator(hidden=[32, 32]), MaxoutDiscriminator(hidden=[16]))


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("training", [True, False])
def test_sampling_changes_no_parameter_buffer_or_mode(training):
    model = pacgan_gan()
    model.train(training)
    model.generator(torch.randn(64, 2))  # running statistics away from their initial values
    before = state(model)
    model.sample_indexed(torch.arange(250))
    list(model.sample_chunks(250, rank=1, world_size=2))
    assert_same_state(before, state(model))
    assert all(m.training == training for m in model.modules())


def test_a_sample_depends_only_on_its_index():
    """Not on the other indices asked for, the rank split, or the module's mode (BatchNorm generator)."""
    model = pacgan_gan()
    model.generator(torch.randn(64, 2))
    whole = model.sample_indexed(torch.arange(250))
    parts = torch.cat([model.sample_indexed(torch.arange(0, 37)), model.sample_indexed(torch.arange(37, 250))])
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)
    shuffled = torch.randperm(250)
    torch.testing.assert_close(model.sample_indexed(shuffled), whole[shuffled], rtol=0, atol=0)
    ranks = [torch.cat(list(model.sample_chunks(250, r, 3))) for r in range(3)]
    order = torch.cat([torch.arange(s, min(s + SAMPLE_CHUNK, 250)) for r in range(3) for s in range(r * 100, 250, 300)])
    torch.testing.assert_close(torch.cat(ranks)[order.argsort()], whole, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(model.sample_indexed(torch.arange(250)), whole, rtol=0, atol=0)


def test_samples_use_the_batch_statistics_of_their_chunk():
    model = pacgan_gan()
    model.generator(torch.randn(64, 2))
    chunk = torch.arange(SAMPLE_CHUNK, 2 * SAMPLE_CHUNK)
    rng = torch.Generator()
    z = torch.stack([torch.randn(2, generator=rng.manual_seed(int(i))) for i in chunk])
    expected = copy.deepcopy(model.generator).train()(z)
    torch.testing.assert_close(model.sample_indexed(chunk[5:7]), expected[5:7], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["gan", "lbt_gan"])
def test_evaluation_callbacks_do_not_change_training(method):
    """A BatchNorm generator trained with evaluations every 2 iterations ends bit-identical to one without."""

    def run(callbacks):
        pl.seed_everything(3)
        if method == "gan":
            model = pacgan_gan()
        else:
            from lbt_lightning.estimators import GaussianMixture

            model = LBTGAN(
                PacGANGenerator(hidden=[32, 32]), GaussianMixture(data_shape=[2], components=4),
                MaxoutDiscriminator(hidden=[16]), unroll_steps=2, estimator_steps=1, unroll_backend="eager",
            )  # fmt: skip
        quiet_trainer(6, callbacks=callbacks).fit(model, GridDataModule(num_modes=25, sigma=0.05, batch_size=64))
        return state(model), torch.get_rng_state()

    plain, plain_rng = run([])
    evaluated, evaluated_rng = run([ModeCoverageCallback(every_n_iterations=2), ScatterPlot(every_n_iterations=2)])
    assert_same_state(plain, evaluated)
    assert torch.equal(plain_rng, evaluated_rng)


class RecordFitMetrics(pl.Callback):
    """The coverage callback's values after each fit-time evaluation (it runs before this one)."""

    def __init__(self):
        self.at: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        coverage = next(cb for cb in trainer.callbacks if isinstance(cb, ModeCoverageCallback))
        self.at.setdefault(pl_module.global_step, dict(coverage.last))


def test_fit_time_metrics_equal_validate_on_that_iterations_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning"])
    config = [
        "--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / "grid" / "gan25_fast.yaml"),
        "--model.init_args.generator.init_args.hidden=[64, 64]", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    cli = main([*config, "--trainer.max_steps=4"], run=False)
    recorder = RecordFitMetrics()
    cli.trainer.callbacks.append(recorder)
    for callback in cli.trainer.callbacks:
        if isinstance(callback, ModeCoverageCallback):
            callback.every_n_iterations = 2
        if isinstance(callback, IterationCheckpoint):
            callback._every_n_train_steps, callback.save_top_k = 2, -1  # keep step=2.ckpt
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    run = tmp_path / "runs/lightning_logs/version_0"
    fit_time = recorder.at[2]
    assert fit_time["val/modes"] >= 0 and set(fit_time) >= {"val/modes", "val/modes_pacgan", "val/hq", "val/kl"}

    validate = main(
        ["validate", "--config", str(run / "config.yaml"), f"--ckpt_path={run / 'checkpoints/step=2.ckpt'}"]
    )
    coverage = next(cb for cb in validate.trainer.callbacks if isinstance(cb, ModeCoverageCallback))
    assert coverage.last == fit_time
    assert coverage.last != recorder.at[4]  # the checkpoint of iteration 2, not the last one
