"""Hypergradients against central finite differences, with the paper's detached Adam moment."""

from collections.abc import Callable

import torch
from torch import Tensor

from lbt_lightning.unroll import inner

ADAM_STEP = inner.adam_step


class ReplayV:
    """Adam step whose detached second moment is recorded on the first run and replayed after.

    The paper's Adam stops the gradient through v, so the hypergradient is the derivative of
    the unroll *with v held at its values*; finite differences must hold it too.
    """

    def __init__(self):
        self.recorded, self.i = [], 0

    def __call__(self, phi, grad, state, lr, cfg):
        new_phi, new_state = ADAM_STEP(phi, grad, state, lr, cfg)
        if self.i < len(self.recorded):
            v = self.recorded[self.i]
            lr_t = lr * torch.sqrt(1 - cfg.beta2**new_state.t) / (1 - cfg.beta1**new_state.t)
            new_phi = phi + lr_t * new_state.m / torch.sqrt(v + cfg.eps)
            new_state = inner.InnerState(new_state.m, v, new_state.t)
        else:
            self.recorded.append(new_state.v.detach().clone())
        self.i += 1
        return new_phi, new_state


def assert_matches_finite_differences(loss: Callable[[], Tensor], params: list[Tensor], monkeypatch, h=1e-5):
    """d loss / d params by autograd equals central differences to 1e-6 relative error (float64).

    ``loss`` must be deterministic (fix its noise inside); the unroll's Adam v is replayed.
    """
    replay = ReplayV()
    monkeypatch.setattr(inner, "adam_step", replay)
    analytic = torch.cat([g.flatten() for g in torch.autograd.grad(loss(), params)])
    numeric = []
    for p in params:
        flat = p.data.view(-1)
        for i in range(p.numel()):
            old, values = flat[i].item(), []
            for x in (old + h, old - h):
                flat[i] = x
                replay.i = 0
                values.append(loss().item())
            flat[i] = old
            numeric.append((values[0] - values[1]) / (2 * h))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    assert analytic.norm() > 1e-3  # the teaching signal is not trivially zero
    rel = (analytic - numeric).norm() / numeric.norm()
    assert rel < 1e-6, f"relative error {rel:.2e}"
