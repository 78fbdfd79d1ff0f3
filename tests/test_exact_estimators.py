"""Exact-likelihood estimators: hypergradient vs finite differences, exactness, the lazy-flow pitfall."""

import math

import pytest
import torch
from gradcheck import assert_matches_finite_differences
from test_unroll import TinyGenerator, make_student, teaching_loss
from torch.func import functional_call

from lbt_lightning.estimators import Flow, GaussianMixture

ESTIMATORS = {
    "mixture": lambda: GaussianMixture(data_shape=[2], components=3, init_scale=1.5),
    "flow_nsf": lambda: Flow(data_shape=[2], flow="nsf", transforms=2, hidden=[6], bins=4),
    "flow_maf": lambda: Flow(data_shape=[2], flow="maf", transforms=2, hidden=[4]),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("steps", [1, 3])
def test_hypergradient_matches_finite_differences(name, inner_optimizer, steps, monkeypatch):
    generator = TinyGenerator().double()
    student = make_student(inner_optimizer, steps=steps, estimator=ESTIMATORS[name]())
    real = torch.randn(32, 2, dtype=torch.float64)
    assert_matches_finite_differences(
        lambda: teaching_loss(student, generator, real), list(generator.parameters()), monkeypatch
    )


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_density_integrates_to_one(name):
    """Exact densities (unlike the ELBO): a Riemann sum over a wide 2-D grid is 1."""
    estimator = ESTIMATORS[name]().double()
    axis = torch.linspace(-8, 8, 201, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = estimator.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=2e-3)


def test_mixture_log_prob_matches_torch_distributions():
    gm = GaussianMixture(data_shape=[3], components=4).double()
    with torch.no_grad():
        gm.logits.copy_(torch.randn(4))
        gm.log_scales.copy_(0.3 * torch.randn(4, 3))
    x = torch.randn(7, 3, dtype=torch.float64)
    d = torch.distributions
    reference = d.MixtureSameFamily(
        d.Categorical(logits=gm.logits), d.Independent(d.Normal(gm.means, gm.scales()), 1)
    ).log_prob(x)
    torch.testing.assert_close(gm.log_prob(x), reference)


def test_flow_data_scale_is_a_change_of_variables():
    flow = Flow(data_shape=[2], hidden=[8], data_scale=0.2).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    inner = flow.flow().log_prob(x / 0.2)
    torch.testing.assert_close(flow.log_prob(x), inner - 2 * math.log(0.2))


def test_flow_is_eager_under_functional_call():
    """A lazy zuko distribution evaluated after functional_call silently uses the original φ;
    Flow.log_prob evaluates it inside the call, so substituted parameters take effect."""
    flow = Flow(data_shape=[2], hidden=[8]).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    shifted = {k: v.detach() + 0.1 for k, v in flow.named_parameters()}
    prefix = "flow."
    lazy = functional_call(flow.flow, {k[len(prefix) :]: v for k, v in shifted.items()}, ())
    torch.testing.assert_close(lazy.log_prob(x), flow.flow().log_prob(x))  # the pitfall: φ ignored

    eager = functional_call(flow, shifted, (x,))
    assert not torch.allclose(eager, flow(x))
    reference = Flow(data_shape=[2], hidden=[8]).double()
    reference.load_state_dict(flow.state_dict())
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1)
    torch.testing.assert_close(eager, reference(x))


@pytest.mark.parametrize(
    "factory, field",
    [
        (lambda: GaussianMixture(components=0), "components"),
        (lambda: GaussianMixture(init_scale=0.0), "init_scale"),
        (lambda: GaussianMixture(min_scale=0.0), "min_scale"),
        (lambda: Flow(flow="realnvp"), "flow"),
        (lambda: Flow(activation="gelu"), "activation"),
        (lambda: Flow(transforms=0), "transforms"),
        (lambda: Flow(bins=1), "bins"),
        (lambda: Flow(hidden=[]), "hidden"),
        (lambda: Flow(data_scale=-1.0), "data_scale"),
    ],
)
def test_bad_arguments_are_named(factory, field):
    with pytest.raises(ValueError, match=field):
        factory()


def test_nsf_outside_its_domain_ignores_the_parameters():
    """Why the configs leave room around the data: beyond 5 * data_scale the splines are the
    identity, so such samples give the unroll, hence the generator, no signal."""
    flow = Flow(data_shape=[2], hidden=[8], data_scale=0.3)
    grads = torch.autograd.grad(flow(torch.tensor([[2.0, -2.0]])).sum(), list(flow.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    inside = torch.autograd.grad(flow(torch.tensor([[0.5, -0.5]])).sum(), list(flow.parameters()), allow_unused=True)
    assert any(g is not None and g.any() for g in inside)
