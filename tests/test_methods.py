"""One training step of every method changes what it should."""

import copy

import pytest
import pytorch_lightning as pl
import torch
from trainers import quiet_trainer

from lbt_lightning.data import RingDataModule
from lbt_lightning.estimators import VAE
from lbt_lightning.methods import GAN, LBT, LBTGAN
from lbt_lightning.networks import MLPDiscriminator, MLPGenerator


def build(method, **kwargs):
    g = MLPGenerator(z_dim=8, hidden=[16])
    if method is GAN:
        return GAN(g, MLPDiscriminator(hidden=[16]), **kwargs)
    est = VAE(latent_dim=4, hidden=[16])
    if method is LBT:
        return LBT(g, est, unroll_steps=2, estimator_steps=1, **kwargs)
    return LBTGAN(g, est, MLPDiscriminator(hidden=[16]), unroll_steps=2, estimator_steps=1, **kwargs)


def fit(model, iterations=1, callbacks=(), data=None):
    trainer = quiet_trainer(iterations, callbacks=list(callbacks))
    trainer.fit(model, data or RingDataModule(batch_size=32))
    return trainer


def changed(before, after):
    return any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True))


@pytest.mark.parametrize("method", [GAN, LBT, LBTGAN])
def test_one_step_changes_generator_and_estimator(method):
    model = build(method)
    before = copy.deepcopy(model)
    trainer = fit(model)
    assert model.global_step == 1
    assert changed(before.generator, model.generator)
    if method is not GAN:
        assert changed(before.estimator, model.estimator)
        assert float(model.student.t) == 2  # estimator_steps * unroll_steps Adam steps
    if method is not LBT:
        assert changed(before.discriminator, model.discriminator)
    logged = set(trainer.logged_metrics)
    assert "train/g_loss" in logged
    if method is not GAN:
        assert {"train/e_loss", "train/teach_loss"} <= logged


@pytest.mark.parametrize("method", [LBT, LBTGAN])
def test_training_step_goes_through_the_teaching_loss_hook(method):
    """docs/extending.md: overriding ``teaching_loss`` changes the generator's loss of both methods."""
    calls = []

    class Hooked(method):
        def teaching_loss(self, real):
            calls.append(real.shape)
            return super().teaching_loss(real, criterion=lambda log_p: -log_p.min())

    g, est = MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16])
    extra = [] if method is LBT else [MLPDiscriminator(hidden=[16])]
    fit(Hooked(g, est, *extra, unroll_steps=2, estimator_steps=1), iterations=2)
    assert calls == [torch.Size([32, 2])] * 2


def test_training_length_counts_iterations_not_optimizer_steps():
    model = build(LBTGAN)
    trainer = fit(model, iterations=5)
    assert trainer.global_step == 5  # two optimizers step per iteration; the generator's counts


def test_warmup_skips_the_estimator():
    model = build(LBTGAN, warmup_iterations=2)
    before = copy.deepcopy(model)
    estimators = []

    class Keep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            estimators.append(copy.deepcopy(pl_module.estimator))

    fit(model, iterations=3, callbacks=[Keep()])
    assert not changed(before.estimator, estimators[1])  # after iteration 2
    assert changed(before.estimator, estimators[2])


def test_teach_every_teaches_on_every_nth_iteration_after_the_warmup():
    model = build(LBTGAN, warmup_iterations=1, teach_every=3)  # unroll_steps 2, estimator_steps 1
    fit(model, iterations=5)  # teaches at iterations 2 and 5
    assert int(model.student.t) == 2 * 2  # two updates of estimator_steps x unroll_steps Adam steps


@pytest.mark.parametrize("method", [GAN, LBT, LBTGAN])
def test_global_step_counts_iterations(method):
    model = build(method, **({"teach_every": 2} if method is LBTGAN else {}))
    trainer = pl.Trainer(max_steps=5, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    batches = []
    model.on_train_batch_start = lambda batch, batch_idx: batches.append(batch_idx)
    trainer.fit(model, RingDataModule(batch_size=8))
    assert trainer.global_step == 5 and batches == [0, 1, 2, 3, 4]


def test_a_skipped_update_still_counts_as_an_iteration():
    model = build(GAN)
    model.clip_grad_norm = None
    weights = copy.deepcopy(model.generator.state_dict())
    model.generator_step = lambda optimizer, loss: model.generator_step_with_grads(optimizer, loss * float("nan"))
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(model, RingDataModule(batch_size=8))
    assert trainer.global_step == 2 and int(model.skipped_steps) == 2
    assert all(torch.equal(v, model.generator.state_dict()[k]) for k, v in weights.items() if "num_batches" not in k)


def test_endless_stream_without_length_is_refused():
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="max_steps"):
        trainer.fit(build(GAN), RingDataModule(batch_size=8))


def test_shape_mismatch_names_both_shapes():
    g = MLPGenerator(z_dim=4, out_features=3, hidden=[8])
    model = LBT(g, VAE(data_shape=[3], hidden=[8]))
    with pytest.raises(ValueError, match=r"generator output shape \(3,\) != data shape \(2,\)"):
        fit(model)
    model = GAN(MLPGenerator(z_dim=4, hidden=[8]), MLPDiscriminator(in_features=3, hidden=[8]))
    with pytest.raises(ValueError, match=r"\(2,\) != discriminator input shape \(3,\)"):
        fit(model)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"gan_weight": -0.1}, "gan_weight"),
        ({"warmup_iterations": -1}, "warmup_iterations"),
        ({"teach_every": 0}, "teach_every"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm"),
    ],
)
def test_bad_method_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build(LBTGAN, **kwargs)


def test_non_positive_learning_rate_is_named():
    model = build(GAN, generator_optimizer=lambda p: torch.optim.Adam(p, lr=-1.0))
    with pytest.raises(ValueError, match="generator_optimizer"):
        fit(model)


class FixedNoise(pl.Callback):
    """The same z for every draw (first n of a fixed pool) and a record of the real batch, so that
    losses can be recomputed before and after the step on exactly what the step saw."""

    def __init__(self, model, z_dim=8):
        self.pool = torch.randn(4096, z_dim)
        model.noise = lambda n: self.pool[:n]
        self.real = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.real = batch.clone()


def sgd(lr):
    return lambda params: torch.optim.SGD(params, lr=lr)


def grad_of(loss, module):
    return torch.autograd.grad(loss, list(module.parameters()))


def step_of(before, after):
    return [b.detach() - a.detach() for a, b in zip(before.parameters(), after.parameters(), strict=True)]


def assert_steps_equal(got, want, lr):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, -lr * w, rtol=1e-3, atol=1e-7)  # float32 rounding of θ1 - θ0


@pytest.mark.parametrize(
    ("method", "lbt_gan"),
    [(GAN, {}), (LBT, {}), (LBTGAN, {}), (LBTGAN, {"warmup_iterations": 1})],
    ids=["GAN", "LBT", "LBTGAN", "LBTGAN-warmup"],
)
def test_one_step_is_minus_lr_times_the_gradient_of_the_papers_losses(method, lbt_gan):
    """With SGD, each network's step equals -lr × the gradient of its loss (PAPER.md §2.1), computed
    here independently on the batch and noise the step saw: D on BCE(D(real), 1) + BCE(D(G(z)), 0)
    before the generator moves, G on λ·BCE(D'(G(z)), 1) - log p_{φ^K}(real) with the updated D' and
    estimator. A flipped sign, swapped labels or a stale network fails; "something changed" would
    not. (The estimator's own update is checked against the authors' Adam in test_authors_adam.py.)"""
    pl.seed_everything(5)
    from lbt_lightning.estimators import GaussianMixture
    from lbt_lightning.methods.gan import d_loss, g_loss

    g, lr_g, lr_d = MLPGenerator(z_dim=8, hidden=[16]), 0.01, 0.05
    common = {"generator_optimizer": sgd(lr_g), "clip_grad_norm": None}
    if method is GAN:
        model = GAN(g, MLPDiscriminator(hidden=[16]), discriminator_optimizer=sgd(lr_d), **common)
    elif method is LBT:
        model = LBT(g, GaussianMixture(data_shape=[2], components=4), unroll_steps=2, estimator_steps=1, **common)
    else:
        model = LBTGAN(
            g, GaussianMixture(data_shape=[2], components=4), MLPDiscriminator(hidden=[16]), unroll_steps=2,
            estimator_steps=1, gan_weight=0.5, discriminator_optimizer=sgd(lr_d), **common, **lbt_gan,
        )  # fmt: skip
    record = FixedNoise(model)
    before = copy.deepcopy(model)
    fit(model, callbacks=[record])
    real, z = record.real, record.pool[:32]
    generator_loss = 0.0
    if method is not LBT:
        d0, d1 = before.discriminator, model.discriminator
        fake0 = before.generator(z).detach()
        discriminator_loss = d_loss(d0(real), d0(fake0))
        assert_steps_equal(step_of(d0, d1), grad_of(discriminator_loss, d0), lr_d)
        generator_loss = getattr(model, "gan_weight", 1.0) * g_loss(d1(before.generator(z)))
    if method is LBT or (method is LBTGAN and not lbt_gan):
        generator = model.generator
        model.generator = before.generator  # the estimator after its update, the generator before its step
        with torch.random.fork_rng():
            generator_loss = generator_loss + model.teaching_loss(real)
        model.generator = generator
    assert_steps_equal(step_of(before.generator, model.generator), grad_of(generator_loss, before.generator), lr_g)
