"""The contract every DensityEstimator must meet; add each new estimator to ESTIMATORS."""

import pytest
import torch
from torch.func import functional_call

import lbt_lightning.estimators as estimators_pkg
from lbt_lightning.estimators import VAE, DensityEstimator, Flow, GaussianMixture

# name -> (factory, sample batch)
ESTIMATORS = {
    "vae_gaussian": (lambda: VAE(data_shape=[2], latent_dim=3, hidden=[8]), lambda: torch.randn(6, 2)),
    "vae_tanh": (
        lambda: VAE(data_shape=[3, 4, 4], latent_dim=3, hidden=[8], output="tanh", x_log_var=-1.0),
        lambda: torch.rand(6, 3, 4, 4) * 2 - 1,
    ),
    "vae_bernoulli": (
        lambda: VAE(data_shape=[3, 4, 4], latent_dim=3, hidden=[8], activation="relu", likelihood="bernoulli"),
        lambda: torch.rand(6, 3, 4, 4),
    ),
    "mixture": (lambda: GaussianMixture(data_shape=[2], components=3), lambda: torch.randn(6, 2)),
    "flow_nsf": (lambda: Flow(data_shape=[2], hidden=[8], bins=4), lambda: torch.randn(6, 2)),
    "flow_maf": (
        lambda: Flow(data_shape=[3, 2, 2], flow="maf", hidden=[8], data_scale=0.5),
        lambda: torch.randn(6, 3, 2, 2),
    ),
}


def test_every_shipped_estimator_is_covered():
    shipped = {
        obj
        for obj in vars(estimators_pkg).values()
        if isinstance(obj, type) and issubclass(obj, DensityEstimator) and obj is not DensityEstimator
    }
    covered = {type(factory()) for factory, _ in ESTIMATORS.values()}
    assert shipped <= covered, f"add {shipped - covered} to ESTIMATORS"


def evaluate(estimator, x, params=None):
    torch.manual_seed(1)  # fixed noise for stochastic bounds such as the ELBO
    if params is None:
        return estimator.log_prob(x)
    return functional_call(estimator, params, (x,))


@pytest.fixture(params=sorted(ESTIMATORS))
def case(request):
    factory, data = ESTIMATORS[request.param]
    return factory(), data()


def test_shape_and_finite(case):
    estimator, x = case
    out = evaluate(estimator, x)
    assert out.shape == (x.shape[0],)
    assert torch.isfinite(out).all()


def test_gradient_reaches_every_parameter(case):
    estimator, x = case
    evaluate(estimator, x).mean().backward()
    for name, p in estimator.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradient_reaches_the_input(case):
    estimator, x = case
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(evaluate(estimator, x).sum(), x)
    assert grad.abs().sum() > 0


def test_functional_call_at_own_parameters_equals_log_prob(case):
    estimator, x = case
    params = {k: v.detach().clone() for k, v in estimator.named_parameters()}
    torch.testing.assert_close(evaluate(estimator, x, params), evaluate(estimator, x))


def test_functional_call_uses_substituted_parameters(case):
    estimator, x = case
    params = {k: v.detach() + 0.1 for k, v in estimator.named_parameters()}
    assert not torch.allclose(evaluate(estimator, x, params), evaluate(estimator, x))


def test_no_running_stat_buffers(case):
    estimator, _ = case
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in estimator.modules())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_save_load_round_trip(name, tmp_path):
    """A freshly built estimator (other initial weights) loaded from the file equals the saved one."""
    factory, data = ESTIMATORS[name]
    estimator, x = factory(), data()
    torch.save(estimator.state_dict(), tmp_path / "est.pt")
    fresh = factory()
    assert not torch.allclose(evaluate(fresh, x), evaluate(estimator, x))  # different before loading
    fresh.load_state_dict(torch.load(tmp_path / "est.pt"))
    assert fresh.state_dict().keys() == estimator.state_dict().keys()
    for key, value in estimator.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    torch.testing.assert_close(evaluate(fresh, x), evaluate(estimator, x), rtol=0, atol=0)


def test_vae_log_prob_is_the_elbo_formula():
    """Gaussian ELBO by hand: log N(x; μ, σ²) summed over dims minus the analytic KL."""
    vae = VAE(data_shape=[2], latent_dim=2, hidden=[4], x_log_var=-2.0).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.manual_seed(0)
    got = vae.log_prob(x)
    torch.manual_seed(0)
    mu, log_var = vae.encoder(x).chunk(2, -1)
    z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
    mean = vae.decoder(z)
    rec = torch.distributions.Normal(mean, torch.exp(torch.tensor(-1.0, dtype=torch.float64))).log_prob(x).sum(-1)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(got, rec - kl)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"likelihood": "poisson"}, "likelihood"), ({"output": "relu"}, "output"), ({"latent_dim": 0}, "latent_dim")],
)
def test_bad_vae_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VAE(**kwargs)
