"""Unrolled GAN: the hypergradient against finite differences, one training step, bad input."""

import copy

import pytest
import torch
from gradcheck import assert_matches_finite_differences
from test_methods import changed, fit
from test_unroll import TinyGenerator

from lbt_lightning.methods import UnrolledGAN
from lbt_lightning.methods.gan import d_loss
from lbt_lightning.networks import MLPDiscriminator, MLPGenerator


def make_model(inner_optimizer="adam", steps=3, generator_loss="minimax"):
    discriminator = MLPDiscriminator(hidden=[5]).double()
    model = UnrolledGAN(TinyGenerator().double(), discriminator, unroll_steps=steps, generator_loss=generator_loss)
    if inner_optimizer == "adam":
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=0.05, betas=(0.5, 0.999))
    else:
        optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.5)
    # Two real steps: a mid-training Adam state (m, v != 0, t = 2) exercises the bias correction.
    for _ in range(2):
        optimizer.zero_grad()
        d_real = discriminator(torch.randn(32, 2, dtype=torch.float64))
        d_loss(d_real, discriminator(torch.randn(32, 2, dtype=torch.float64))).backward()
        optimizer.step()
    return model, optimizer


def generator_loss(model, optimizer, real, z):
    return model.unrolled_loss(real, model.generator(z), optimizer)


@pytest.mark.parametrize(
    "inner_optimizer, steps, loss", [("adam", 3, "minimax"), ("sgd", 3, "minimax"), ("adam", 2, "non_saturating")]
)
def test_hypergradient_matches_finite_differences(inner_optimizer, steps, loss, monkeypatch):
    model, optimizer = make_model(inner_optimizer, steps, loss)
    real, z = torch.randn(32, 2, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    assert_matches_finite_differences(
        lambda: generator_loss(model, optimizer, real, z), list(model.generator.parameters()), monkeypatch
    )


OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.999)),
    "adam-amsgrad-l2": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True, weight_decay=1e-2),
    "adamw-maximize": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-1, maximize=True),
    "sgd": lambda p: torch.optim.SGD(p, lr=1e-2),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, dampening=0.1, weight_decay=1e-2),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_unrolled_steps_without_graph_are_the_real_steps(name, steps):
    """Golden test: the unroll is the discriminator's own optimizer, continuing its state."""
    torch.manual_seed(0)
    discriminator = MLPDiscriminator()  # the ring's, float32
    optimizer = OPTIMIZERS[name](discriminator.parameters())
    for _ in range(20):  # a mid-training state: m, v, momentum and step counter all non-zero
        optimizer.zero_grad()
        d_loss(discriminator(torch.randn(64, 2)), discriminator(0.5 * torch.randn(64, 2))).backward()
        optimizer.step()
    model = UnrolledGAN(MLPGenerator(z_dim=4, hidden=[8]), discriminator, unroll_steps=steps)
    real, fake = torch.randn(64, 2), 0.5 * torch.randn(64, 2)
    before = [p.detach().clone() for p in discriminator.parameters()]

    unrolled = model.unrolled_discriminator(real, fake, optimizer, create_graph=False)
    for _ in range(steps):
        optimizer.zero_grad()
        d_loss(discriminator(real), discriminator(fake)).backward()
        optimizer.step()

    flat = lambda tensors: torch.cat([t.detach().flatten() for t in tensors])  # noqa: E731
    after = flat(discriminator.parameters())
    difference = (flat(unrolled.values()) - after).norm() / (after - flat(before)).norm()
    assert difference < 1e-5, f"unrolled differs from the real steps by {difference:.2e} of their norm"


def test_unroll_changes_the_gradient():
    """K steps of the discriminator change the generator's gradient: the baseline is not a GAN."""
    model, optimizer = make_model(steps=3)
    real, z = torch.randn(32, 2, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    params = list(model.generator.parameters())
    unrolled = torch.autograd.grad(generator_loss(model, optimizer, real, z), params)
    d = model.discriminator
    plain = torch.autograd.grad(-d_loss(d(real), d(model.generator(z))), params)
    unrolled, plain = torch.cat([g.flatten() for g in unrolled]), torch.cat([g.flatten() for g in plain])
    assert (unrolled - plain).norm() / plain.norm() > 1e-3


def test_one_step_changes_generator_and_discriminator():
    model = UnrolledGAN(MLPGenerator(z_dim=8, hidden=[16]), MLPDiscriminator(hidden=[16]), unroll_steps=2)
    before = copy.deepcopy(model)
    trainer = fit(model)
    assert model.global_step == 1
    assert changed(before.generator, model.generator)
    assert changed(before.discriminator, model.discriminator)
    assert {"train/g_loss", "train/d_loss"} <= set(trainer.logged_metrics)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"unroll_steps": 0}, "unroll_steps"), ({"generator_loss": "wasserstein"}, "generator_loss")],
)
def test_bad_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        UnrolledGAN(MLPGenerator(z_dim=4, hidden=[8]), MLPDiscriminator(hidden=[8]), **kwargs)


def test_an_optimizer_that_cannot_be_unrolled_is_refused():
    model = UnrolledGAN(
        MLPGenerator(z_dim=4, hidden=[8]),
        MLPDiscriminator(hidden=[8]),
        discriminator_optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-3),
    )
    with pytest.raises(ValueError, match="discriminator_optimizer"):
        fit(model)
