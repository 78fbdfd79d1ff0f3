"""PacGAN's 2-D networks: shapes, PacGAN's layer structure, validation, and how LBT draws the fake
batches of a BatchNorm generator (one generator call per batch, each normalised by itself)."""

import copy

import pytest
import torch
from test_methods import changed, fit
from torch import nn

from lbt_lightning.estimators import GaussianMixture
from lbt_lightning.methods import GAN, LBT, LBTGAN
from lbt_lightning.networks import MaxoutDiscriminator, PacGANGenerator
from lbt_lightning.networks.pacgan import Maxout


def test_pacgan_layers_are_the_papers():
    g, d = PacGANGenerator(), MaxoutDiscriminator()
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias is not None) for m in linears] == [
        (2, 400, False), (400, 400, False), (400, 400, False), (400, 400, False), (400, 2, True)
    ]  # fmt: skip
    assert sum(isinstance(m, nn.BatchNorm1d) for m in g.modules()) == 4
    assert [m.linear.out_features for m in d.modules() if isinstance(m, Maxout)] == [1000, 1000, 1000]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - 0.02) < 1e-3  # PacGAN: IsotropicGaussian(0.02)
    assert g(torch.randn(5, 2)).shape == (5, 2) and d(torch.randn(5, 2)).shape == (5,)


def test_maxout_is_the_max_over_pieces():
    layer = Maxout(3, 2, pieces=4)
    x = torch.randn(6, 3, dtype=torch.float64)
    layer = layer.double()
    affine = x @ layer.linear.weight.T + layer.linear.bias  # (6, 2 * 4): unit j's pieces are 4j..4j+3
    expected = affine.reshape(6, 2, 4).max(-1).values
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PacGANGenerator(hidden=[]), "hidden"),
        (lambda: PacGANGenerator(hidden=[400, 0]), "hidden"),
        (lambda: PacGANGenerator(init_std=0.0), "init_std"),
        (lambda: PacGANGenerator(z_dim=0), "z_dim"),
        (lambda: PacGANGenerator(activation="swish"), "activation"),
        (lambda: MaxoutDiscriminator(pieces=0), "pieces"),
        (lambda: MaxoutDiscriminator(hidden=[-1]), "hidden"),
    ],
)
def test_bad_arguments_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lbt_draws_each_fake_batch_of_a_batchnorm_generator_in_its_own_call():
    """In training mode a BatchNorm generator's sample depends on its batch: the teaching loss's k
    batches must come from k calls of n samples (each normalised with its own statistics, as in a
    GAN step), not one call of k·n samples, which would normalise with the statistics of all k."""
    generator = PacGANGenerator(hidden=[16, 16])
    model = LBT(generator, GaussianMixture(components=4))
    assert not model.batch_independent
    calls = []
    generator.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    torch.manual_seed(0)
    batches = model.sample_batches(8, 3, grad=True)
    assert calls == [8, 8, 8] and all(x.requires_grad for x in batches)
    torch.manual_seed(0)
    z = [torch.randn(8, 2) for _ in range(3)]
    for x, zi in zip(batches, z, strict=True):
        torch.testing.assert_close(x, generator(zi))
    assert not torch.allclose(torch.cat(batches), generator(torch.cat(z)))  # why it matters


@pytest.mark.parametrize("method", [GAN, LBT, LBTGAN])
def test_every_method_trains_the_pacgan_networks(method):
    g, d, e = PacGANGenerator(hidden=[16, 16]), MaxoutDiscriminator(hidden=[16]), GaussianMixture(components=4)
    model = {GAN: lambda: GAN(g, d), LBT: lambda: LBT(g, e, unroll_steps=2, estimator_steps=1)}.get(
        method, lambda: LBTGAN(g, e, d, unroll_steps=2, estimator_steps=1)
    )()
    before = copy.deepcopy(model.generator)
    fit(model, iterations=2)
    assert changed(before, model.generator)
    running = [m.running_mean for m in model.generator.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(torch.isfinite(r).all() and r.abs().sum() > 0 for r in running)
