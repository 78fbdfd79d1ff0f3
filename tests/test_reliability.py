"""Exact resume from a checkpoint, and the non-finite guard."""

import pytest
import pytorch_lightning as pl
import torch
from trainers import quiet_trainer

from lbt_lightning.callbacks import IterationCheckpoint, ModeCoverageCallback
from lbt_lightning.data import GridDataModule, RingDataModule
from lbt_lightning.estimators import VAE, DensityEstimator, GaussianMixture
from lbt_lightning.methods import LBT, LBTGAN
from lbt_lightning.networks import MaxoutDiscriminator, MLPDiscriminator, MLPGenerator, PacGANGenerator


def build(method, estimator=None, **kwargs):
    pl.seed_everything(7)
    g = MLPGenerator(z_dim=8, hidden=[16])
    estimator = estimator or VAE(latent_dim=4, hidden=[16])
    if method is LBT:
        return LBT(g, estimator, unroll_steps=2, estimator_steps=1, **kwargs)
    return LBTGAN(g, estimator, MLPDiscriminator(hidden=[16]), unroll_steps=2, estimator_steps=1, **kwargs)


class Crash(pl.Callback):
    """Simulates a killed run: fails when iteration ``at`` + 1 would start."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.global_step == self.at:
            raise RuntimeError("simulated crash")


def trainer(tmp_path, iterations, callbacks=()):
    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_last=True)
    return quiet_trainer(
        iterations, enable_checkpointing=True, default_root_dir=tmp_path, callbacks=[checkpoint, *callbacks]
    )


def full_state(model, trainer):
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    for i, opt in enumerate(trainer.optimizers):
        for j, (pid, s) in enumerate(opt.state_dict()["state"].items()):
            for name, value in s.items():
                state[f"opt{i}.{j}.{pid}.{name}"] = torch.as_tensor(value).clone()
    return state


# Resuming writes into the crashed run's checkpoint folder on purpose; and Lightning cannot see
# that the data streams resume by iteration (MixtureStream's ``start``), which this test checks.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
@pytest.mark.parametrize("backend", ["eager", "compiled"])
@pytest.mark.parametrize("method", [LBT, LBTGAN])
def test_resume_is_exact(method, backend, tmp_path, quick_compile):
    n = 3
    model = build(method, unroll_backend=backend)
    t = trainer(tmp_path / "a", 2 * n)
    pl.seed_everything(11)
    t.fit(model, RingDataModule(batch_size=32))
    uninterrupted = full_state(model, t)

    model = build(method, unroll_backend=backend)
    pl.seed_everything(11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "b", 2 * n, [Crash(n)]).fit(model, RingDataModule(batch_size=32))
    ckpt = tmp_path / "b" / "ckpt" / "last.ckpt"
    assert ckpt.exists()

    model = build(method, unroll_backend=backend)
    pl.seed_everything(11)
    t = trainer(tmp_path / "b", 2 * n)
    t.fit(model, RingDataModule(batch_size=32), ckpt_path=ckpt)
    resumed = full_state(model, t)

    assert model.global_step == 2 * n
    assert resumed.keys() == uninterrupted.keys()
    assert any(k.startswith("module.student.m") for k in resumed)
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_resume_is_exact_with_a_batchnorm_generator_and_evaluations(tmp_path):
    """PacGAN's BatchNorm generator (running statistics) with mode coverage every 2 iterations: the
    evaluations and the shape check at the resumed fit's start leave the statistics alone."""

    def build_grid():
        pl.seed_everything(7)
        return LBTGAN(
            PacGANGenerator(hidden=[32, 32]), GaussianMixture(data_shape=[2], components=4),
            MaxoutDiscriminator(hidden=[16]), unroll_steps=2, estimator_steps=1, unroll_backend="eager",
        )  # fmt: skip

    def data():
        return GridDataModule(num_modes=25, sigma=0.05, batch_size=64)

    def evaluations():
        return [ModeCoverageCallback(every_n_iterations=2)]

    n = 3
    model = build_grid()
    t = trainer(tmp_path / "a", 2 * n, evaluations())
    pl.seed_everything(11)
    t.fit(model, data())
    uninterrupted = full_state(model, t)

    model = build_grid()
    pl.seed_everything(11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "b", 2 * n, [*evaluations(), Crash(n)]).fit(model, data())

    model = build_grid()
    pl.seed_everything(11)
    t = trainer(tmp_path / "b", 2 * n, evaluations())
    t.fit(model, data(), ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt")
    resumed = full_state(model, t)
    assert any("running_mean" in k for k in resumed)
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key


class NaNOnDemand(DensityEstimator):
    """A Gaussian whose log-density turns NaN when ``poisoned`` is set."""

    def __init__(self):
        super().__init__()
        self.in_shape = (2,)
        self.mean = torch.nn.Parameter(torch.zeros(2))
        self.poisoned = False

    def log_prob(self, x):
        out = torch.distributions.Normal(self.mean, 1.0).log_prob(x).sum(-1)
        return out * float("nan") if self.poisoned else out


@pytest.mark.parametrize("method", [LBT, LBTGAN])
def test_non_finite_updates_are_skipped(method):
    model = build(method, NaNOnDemand())
    quiet_trainer(1).fit(model, RingDataModule(batch_size=16))
    model.estimator.poisoned = True
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = quiet_trainer(2)
    t.fit(model, RingDataModule(batch_size=16))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # estimator, its Adam state and the generator are untouched; only counters (and D) move
    assert not any(k.startswith(("generator.", "student.")) for k in changed), changed
    assert int(model.skipped_steps) == 4  # estimator update + generator step, twice
    assert float(t.logged_metrics["train/skipped_steps"]) == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_consecutive_skips_stop_the_run():
    model = build(LBT, NaNOnDemand(), max_consecutive_skips=3)
    model.estimator.poisoned = True
    with pytest.raises(RuntimeError, match="non-finite .* 3 consecutive iterations"):
        quiet_trainer(10).fit(model, RingDataModule(batch_size=16))
    assert model.global_step == 3


def test_bad_max_consecutive_skips_is_named():
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        build(LBT, max_consecutive_skips=0)
