"""LBT-GAN's two generator gradients: logged separately, summed exactly, and held at a ratio by ``balance``."""

import copy
import statistics

import pytest
import pytorch_lightning as pl
import torch
from test_methods import FixedNoise
from trainers import quiet_trainer

from lbt_lightning.data import RingDataModule
from lbt_lightning.estimators import VAE, GaussianMixture
from lbt_lightning.methods import LBTGAN
from lbt_lightning.methods.gan import g_loss
from lbt_lightning.networks import MLPDiscriminator, MLPGenerator


def build(estimator=None, **kwargs):
    pl.seed_everything(3)
    estimator = estimator or VAE(latent_dim=4, hidden=[16], x_log_var=-6.907755)  # the paper's ring VAE, narrower
    kwargs = {"unroll_steps": 2, "estimator_steps": 1, "unroll_backend": "eager", **kwargs}
    return LBTGAN(MLPGenerator(z_dim=8, hidden=[16]), estimator, MLPDiscriminator(hidden=[16]), **kwargs)


class Norms(pl.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        logs = pl_module._teaching_logs
        self.rows.append(
            {k: float(logs[k]) for k in ("train/grad_norm_gan", "train/grad_norm_teach", "train/teach_weight")}
        )


def test_each_terms_gradient_is_logged_and_their_sum_is_the_step():
    """With SGD, the generator's step is -lr × (∇ λ·GAN + ∇ teaching), and the logged norms are those
    of the two gradients computed here on their own, on the batch and noise the step saw."""
    lr = 0.01
    sgd = {"generator_optimizer": lambda p: torch.optim.SGD(p, lr=lr), "clip_grad_norm": None}
    model = build(GaussianMixture(data_shape=[2], components=4), gan_weight=0.5, **sgd)  # deterministic log p
    record, norms = FixedNoise(model), Norms()
    before = copy.deepcopy(model)
    quiet_trainer(1, callbacks=[record, norms]).fit(model, RingDataModule(batch_size=32))
    params = list(before.generator.parameters())
    gan = 0.5 * g_loss(model.discriminator(before.generator(record.pool[:32])))
    generator = model.generator
    model.generator = before.generator  # the updated estimator, the generator before its step
    with torch.random.fork_rng():
        teach = model.teaching_loss(record.real)
    model.generator = generator
    g_gan, g_teach = torch.autograd.grad(gan, params), torch.autograd.grad(teach, params)
    row = norms.rows[0]
    assert row["train/grad_norm_gan"] == pytest.approx(float(torch.nn.utils.get_total_norm(g_gan)), rel=1e-5)
    assert row["train/grad_norm_teach"] == pytest.approx(float(torch.nn.utils.get_total_norm(g_teach)), rel=1e-5)
    assert row["train/teach_weight"] == 1.0
    for p0, p1, a, b in zip(params, model.generator.parameters(), g_gan, g_teach, strict=True):
        torch.testing.assert_close(p1.detach() - p0.detach(), -lr * (a + b), rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("balance", [0.1, 1.0, 10.0])
def test_balance_holds_the_ratio_of_the_two_gradients(balance):
    """Median over the iterations after the first 10 %: within a factor of 2 of the target, where the
    paper's weight gives a ratio far from it."""
    norms = Norms()
    model = build(balance=balance)
    quiet_trainer(60, callbacks=[norms]).fit(model, RingDataModule(batch_size=64))
    ratios = [r["train/grad_norm_teach"] / r["train/grad_norm_gan"] for r in norms.rows[6:]]
    assert balance / 2 <= statistics.median(ratios) <= balance * 2
    assert float(model.teach_weight) == pytest.approx(norms.rows[-1]["train/teach_weight"])


def test_without_balance_the_ratio_is_whatever_the_scales_make_it():
    norms = Norms()
    quiet_trainer(10, callbacks=[norms]).fit(build(), RingDataModule(batch_size=64))
    ratios = [r["train/grad_norm_teach"] / r["train/grad_norm_gan"] for r in norms.rows]
    assert statistics.median(ratios) > 20  # σ² 0.001 makes the teaching term dominate λ 0.1·GAN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"balance": 0.0}, "balance must be a finite number > 0"),
        ({"balance": -1.0}, "balance must be a finite number > 0"),
        ({"balance": float("inf")}, "balance must be a finite number > 0"),
        ({"balance": float("nan")}, "balance must be a finite number > 0"),
        ({"balance": "1"}, "balance must be a finite number > 0"),
        ({"balance": 1.0, "gan_weight": 0.0}, "balance needs gan_weight"),
    ],
)
def test_bad_balance_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_resume_with_balance_is_exact(tmp_path):
    from test_reliability import Crash, full_state, trainer

    n = 3
    model = build(balance=1.0)
    t = trainer(tmp_path / "a", 2 * n)
    pl.seed_everything(11)
    t.fit(model, RingDataModule(batch_size=32))
    uninterrupted = full_state(model, t)

    model = build(balance=1.0)
    pl.seed_everything(11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "b", 2 * n, [Crash(n)]).fit(model, RingDataModule(batch_size=32))

    model = build(balance=1.0)
    pl.seed_everything(11)
    t = trainer(tmp_path / "b", 2 * n)
    t.fit(model, RingDataModule(batch_size=32), ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt")
    resumed = full_state(model, t)
    assert 0 < float(resumed["module.teach_weight"]) != 1.0
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_a_checkpoint_from_before_balance_still_loads(tmp_path):
    model = build()
    trainer = quiet_trainer(1, enable_checkpointing=False)
    trainer.fit(model, RingDataModule(batch_size=32))
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=False)
    del checkpoint["state_dict"]["teach_weight"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = LBTGAN.load_from_checkpoint(
        tmp_path / "old.ckpt", generator=MLPGenerator(z_dim=8, hidden=[16]),
        estimator=VAE(latent_dim=4, hidden=[16]), discriminator=MLPDiscriminator(hidden=[16]),
    )  # fmt: skip
    assert float(loaded.teach_weight) == 0.0


def test_estimator_fit_logs_the_lag_behind_a_refitted_copy():
    from lbt_lightning.callbacks import EstimatorFit

    fit = EstimatorFit(every_n_iterations=2, num_samples=500, refit_steps=200, refit_lr=3e-2)
    model = build(GaussianMixture(data_shape=[2], components=4))
    quiet_trainer(2, callbacks=[fit]).fit(model, RingDataModule(batch_size=32))
    values = fit.last
    assert set(values) == {"val/estimator_log_prob", "val/estimator_refit_log_prob", "val/estimator_lag"}
    assert values["val/estimator_lag"] == pytest.approx(
        values["val/estimator_refit_log_prob"] - values["val/estimator_log_prob"]
    )
    assert values["val/estimator_lag"] > 0.1  # a few teaching steps leave the mixture far from its fit
    samples = model.sample_indexed(torch.arange(500))
    assert values["val/estimator_log_prob"] == pytest.approx(float(model.estimator.log_prob(samples).mean().detach()))
    before = {k: v.clone() for k, v in model.estimator.state_dict().items()}
    assert fit.refit(model.estimator, samples) > values["val/estimator_log_prob"]
    assert all(torch.equal(before[k], v) for k, v in model.estimator.state_dict().items())  # a copy is refitted


def test_estimator_fit_needs_an_estimator():
    from lbt_lightning.callbacks import EstimatorFit
    from lbt_lightning.methods import GAN

    gan = GAN(MLPGenerator(hidden=[8]), MLPDiscriminator(hidden=[8]))
    with pytest.raises(ValueError, match="EstimatorFit needs a method with an estimator"):
        EstimatorFit().setup(None, gan, "fit")
