"""The unrolled hypergradient against finite differences, and unroll = real update."""

import copy

import pytest
import torch
from gradcheck import assert_matches_finite_differences
from torch import nn

from lbt_lightning.estimators import VAE
from lbt_lightning.unroll import objectives
from lbt_lightning.unroll.compiled import CompiledUnroll
from lbt_lightning.unroll.teacher import Teacher


class TinyGenerator(nn.Module):
    z_dim = 3

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def forward(self, z):
        return self.net(z)


def make_teacher(inner_optimizer="adam", first_order=False, steps=3, lr=0.05, estimator=None):
    """A float64 Teacher (default: a tiny VAE) in a mid-training Adam state."""
    estimator = estimator or VAE(data_shape=[2], latent_dim=2, hidden=[5], x_log_var=-1.0)
    teacher = Teacher(
        estimator.double(),
        unroll_steps=steps,
        unroll_lr=lr,
        estimator_lr=3 * lr,
        estimator_steps=1,
        inner_optimizer=inner_optimizer,
        first_order=first_order,
    ).double()
    # A mid-training state: non-zero moments and step counter exercise the bias correction.
    for name, buf in teacher.named_buffers():
        if name.startswith("m"):
            buf.copy_(0.1 * torch.randn_like(buf))
        elif name.startswith("v"):
            buf.copy_(0.01 * torch.rand_like(buf) + 1e-3)
    teacher.t.fill_(4)
    return teacher


def teaching_loss(teacher, generator, real):
    torch.manual_seed(123)  # the same z and VAE noise at every evaluation
    return teacher.loss(lambda: generator(torch.randn(16, 3, dtype=torch.float64)), real)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("steps", [1, 3])
def test_hypergradient_matches_finite_differences(inner_optimizer, steps, backend, monkeypatch):
    generator = TinyGenerator().double()
    teacher = make_teacher(inner_optimizer, steps=steps)
    if backend == "compiled":  # its torch.func code, run without compiling (the replayed v is Python state)
        teacher.backend = CompiledUnroll(teacher.estimator, inner_optimizer=inner_optimizer, compiled=False)
    real = torch.randn(32, 2, dtype=torch.float64)
    assert_matches_finite_differences(
        lambda: teaching_loss(teacher, generator, real), list(generator.parameters()), monkeypatch
    )


def test_first_order_differs_from_full():
    generator = TinyGenerator().double()
    real = torch.randn(32, 2, dtype=torch.float64)
    full, first = make_teacher(steps=3), make_teacher(first_order=True, steps=3)
    first.load_state_dict(full.state_dict())
    g_full = torch.autograd.grad(teaching_loss(full, generator, real), list(generator.parameters()))
    g_first = torch.autograd.grad(teaching_loss(first, generator, real), list(generator.parameters()))
    full_vec = torch.cat([g.flatten() for g in g_full])
    first_vec = torch.cat([g.flatten() for g in g_first])
    assert first_vec.norm() > 0
    assert (full_vec - first_vec).norm() / full_vec.norm() > 1e-3


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
def test_unroll_equals_real_update(inner_optimizer, device):
    """The differentiable unroll's values equal the estimator's real update on the same samples."""
    teacher = make_teacher(inner_optimizer, steps=4).float().to(device)
    teacher.estimator_lr = teacher.unroll_lr  # compare at one learning rate
    samples = [torch.randn(16, 2, device=device) for _ in range(4)]
    before = copy.deepcopy(teacher)

    torch.manual_seed(7)
    feed = iter(samples)
    unrolled = objectives.unroll(
        objectives.log_likelihood(before.estimator, lambda: next(feed)),
        objectives.detached_params(before.estimator),
        before.state(),
        steps=4,
        lr=teacher.unroll_lr,
        inner_optimizer=inner_optimizer,
    )
    torch.manual_seed(7)
    feed = iter(samples)
    teacher.update(lambda: next(feed))

    for name, p in teacher.estimator.named_parameters():
        torch.testing.assert_close(p, unrolled.params[name].detach(), atol=1e-6, rtol=1e-5)
        assert not torch.equal(p, before.estimator.get_parameter(name))
    state = teacher.state()
    for name in state.m:
        torch.testing.assert_close(state.m[name], unrolled.state.m[name].detach(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(state.v[name], unrolled.state.v[name], atol=1e-6, rtol=1e-5)
    expected_t = 8.0 if inner_optimizer == "adam" else 4.0
    assert float(state.t) == float(unrolled.state.t) == expected_t


def test_real_update_runs_estimator_steps_times_k():
    teacher = make_teacher(steps=5)
    teacher.estimator_steps = 2
    calls = []
    teacher.update(lambda: calls.append(1) or torch.randn(8, 2, dtype=torch.float64))
    assert len(calls) == 10 and float(teacher.t) == 4 + 10


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"unroll_steps": 0}, "unroll_steps"),
        ({"estimator_steps": 0}, "estimator_steps"),
        ({"unroll_lr": 0.0}, "unroll_lr"),
        ({"estimator_lr": -1.0}, "estimator_lr"),
        ({"inner_optimizer": "rmsprop"}, "inner_optimizer"),
    ],
)
def test_bad_teacher_arguments_are_named(kwargs, field):
    args = dict(unroll_steps=5, unroll_lr=1e-4, estimator_lr=3e-4, estimator_steps=2, inner_optimizer="adam")
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        Teacher(VAE(), first_order=False, **args)
