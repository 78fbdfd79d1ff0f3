"""The unroll's Adam against a numpy re-typing of the authors' (PAPER.md §2.1 point 3): ε inside the
square root, bias correction from the persistent step counter t, the second moment v detached.

The objective ``sum(θ·φ) - ½·sum(φ²)`` has the gradient g = θ - φ, so the numpy version can carry
the derivative dφ/dθ (diagonal) along with the values. The numbers are chosen so that each of the
three details moves the result well beyond the tolerance: v ≈ ε (ε inside or outside the square
root, and the derivative through v, both change it by 10-40 %), and t starts at 5 (bias
correction from t = 6 rather than 1).
"""

import numpy as np
import pytest
import torch

from lbt_lightning.unroll import inner

BETA1, BETA2, EPS, LR = 0.5, 0.999, 1e-8, 1e-3


def authors_adam(phi, m, v, t, theta, steps):
    """Values and d(phi)/d(theta) after ``steps`` Adam ascent steps, as the authors' TF graph has them."""
    phi, m, v, dphi, dm = phi.copy(), m.copy(), v.copy(), np.zeros_like(phi), np.zeros_like(phi)
    for _ in range(steps):
        g, dg = theta - phi, 1.0 - dphi
        t += 1
        m, dm = BETA1 * m + (1 - BETA1) * g, BETA1 * dm + (1 - BETA1) * dg
        v = BETA2 * v + (1 - BETA2) * g**2  # tf.stop_gradient: no derivative
        lr_t = LR * np.sqrt(1 - BETA2**t) / (1 - BETA1**t)
        phi, dphi = phi + lr_t * m / np.sqrt(v + EPS), dphi + lr_t * dm / np.sqrt(v + EPS)
    return phi, m, v, t, dphi


def start():
    rng = np.random.default_rng(0)
    phi = rng.normal(scale=1e-3, size=6)
    theta = phi + rng.choice([-1, 1], size=6) * rng.uniform(2e-3, 4e-3, size=6)  # |g| ≈ 3e-3
    m = rng.normal(scale=1e-3, size=6)
    v = rng.uniform(0.5e-8, 1.5e-8, size=6)  # ≈ ε
    return phi, m, v, theta


@pytest.mark.parametrize("steps", [1, 3])
def test_unrolled_adam_equals_the_authors(steps):
    phi0, m0, v0, theta0 = start()
    t0 = 5  # the persistent counter of earlier updates
    theta = torch.tensor(theta0, requires_grad=True)
    state = inner.InnerState(torch.tensor(m0), torch.tensor(v0), torch.tensor(float(t0), dtype=torch.float64))

    def log_prob(phi, x):  # mean log_prob(φ, x) = sum(θ·φ) - ½·sum(φ²): its gradient is θ - φ
        return (theta * phi).sum() - 0.5 * phi.square().sum()

    gradient = inner.autograd_gradient(log_prob, create_graph=True)
    phi_k, state_k, _ = inner.unroll(gradient, torch.tensor(phi0), state, [None] * steps, lr=LR)
    (dphi,) = torch.autograd.grad(phi_k.sum(), theta)

    phi, m, v, t, want_dphi = authors_adam(phi0, m0, v0, t0, theta0, steps)
    assert float(state_k.t) == t == t0 + steps
    np.testing.assert_allclose(phi_k.detach().numpy(), phi, rtol=1e-12, atol=0)
    np.testing.assert_allclose(state_k.m.detach().numpy(), m, rtol=1e-12, atol=0)
    np.testing.assert_allclose(state_k.v.numpy(), v, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dphi.numpy(), want_dphi, rtol=1e-10, atol=0)
    assert not state_k.v.requires_grad


def test_the_details_matter_at_these_numbers():
    """Each wrong variant misses the reference by far more than the tolerance above."""
    phi0, m0, v0, theta0 = start()
    phi, *_ = authors_adam(phi0, m0, v0, 5, theta0, 3)
    g = theta0 - phi0
    v1 = BETA2 * v0 + (1 - BETA2) * g**2
    m1 = BETA1 * m0 + (1 - BETA1) * g
    lr_6, lr_1 = (LR * np.sqrt(1 - BETA2**t) / (1 - BETA1**t) for t in (6, 1))
    inside = lr_6 * m1 / np.sqrt(v1 + EPS)
    assert np.abs(lr_6 * m1 / (np.sqrt(v1) + EPS) / inside - 1).min() > 0.1  # ε outside the root
    assert np.abs(lr_1 / lr_6 - 1) > 0.1  # a per-call counter
    # v attached: the extra derivative -lr_t·m·(1-β2)·g·(v+ε)^-1.5 against the kept lr_t·(1-β1)·(v+ε)^-0.5
    ratio = np.abs(m1 * (1 - BETA2) * g / ((1 - BETA1) * (v1 + EPS)))
    assert ratio.min() > 0.01
