"""The unrolled hypergradient against finite differences, and unroll = real update."""

import copy

import pytest
import torch
from gradcheck import assert_matches_finite_differences
from torch import nn

from lbt_lightning.estimators import VAE
from lbt_lightning.methods import LBT
from lbt_lightning.unroll import inner
from lbt_lightning.unroll.compiled import CompiledUnroll
from lbt_lightning.unroll.inner import Student


class TinyGenerator(nn.Module):
    z_dim = 3

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def forward(self, z):
        return self.net(z)


def make_student(inner_optimizer="adam", first_order=False, steps=3, lr=0.05, estimator=None):
    """A float64 Student (default: a tiny VAE) in a mid-training Adam state."""
    estimator = estimator or VAE(data_shape=[2], latent_dim=2, hidden=[5], x_log_var=-1.0)
    student = Student(
        estimator.double(),
        unroll_steps=steps,
        unroll_lr=lr,
        estimator_lr=3 * lr,
        estimator_steps=1,
        inner_optimizer=inner_optimizer,
        first_order=first_order,
    ).double()
    # A mid-training state: non-zero moments and step counter exercise the bias correction.
    student.m.copy_(0.1 * torch.randn_like(student.m))
    student.v.copy_(0.01 * torch.rand_like(student.v) + 1e-3)
    student.t.fill_(4)
    return student


def teaching_loss(student, generator, real):
    torch.manual_seed(123)  # the same z and VAE noise at every evaluation
    fakes = [generator(torch.randn(16, 3, dtype=torch.float64)) for _ in range(student.unroll_steps)]
    return student.teaching_loss(fakes, real)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("steps", [1, 3])
def test_hypergradient_matches_finite_differences(inner_optimizer, steps, backend, monkeypatch):
    generator = TinyGenerator().double()
    student = make_student(inner_optimizer, steps=steps)
    if backend == "compiled":  # its torch.func code, run without compiling (the replayed v is Python state)
        student.compiled = CompiledUnroll(student, compiled=False)
    real = torch.randn(32, 2, dtype=torch.float64)
    assert_matches_finite_differences(
        lambda: teaching_loss(student, generator, real), list(generator.parameters()), monkeypatch
    )


def test_first_order_differs_from_full():
    generator = TinyGenerator().double()
    real = torch.randn(32, 2, dtype=torch.float64)
    full, first = make_student(steps=3), make_student(first_order=True, steps=3)
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
    student = make_student(inner_optimizer, steps=4).float().to(device)
    student.estimator_lr = student.unroll_lr  # compare at one learning rate
    samples = [torch.randn(16, 2, device=device) for _ in range(4)]
    before = copy.deepcopy(student)

    torch.manual_seed(7)
    gradient = inner.autograd_gradient(before.log_prob, create_graph=True)
    phi_k, state_k, _ = inner.unroll(
        gradient, before.phi(), before.state(), samples, lr=student.unroll_lr, inner_optimizer=inner_optimizer
    )
    torch.manual_seed(7)
    student.update(samples)

    unrolled = before.layout.unflatten(phi_k.detach())
    for name, p in student.estimator.named_parameters():
        torch.testing.assert_close(p, unrolled[name], atol=1e-6, rtol=1e-5)
        assert not torch.equal(p, before.estimator.get_parameter(name))
    torch.testing.assert_close(student.m, state_k.m.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(student.v, state_k.v, atol=1e-6, rtol=1e-5)
    expected_t = 8.0 if inner_optimizer == "adam" else 4.0
    assert float(student.t) == float(state_k.t) == expected_t


def test_real_update_runs_estimator_steps_times_k():
    model = LBT(TinyGenerator(), VAE(data_shape=[2], latent_dim=2, hidden=[5]), unroll_steps=5, estimator_steps=2)
    drawn = []
    sample = model.sample
    model.sample = lambda n, **kwargs: drawn.append(n) or sample(n, **kwargs)
    model.update_student(8)
    assert drawn == [8] * 10 and float(model.student.t) == 10


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
def test_bad_student_arguments_are_named(kwargs, field):
    args = dict(unroll_steps=5, unroll_lr=1e-4, estimator_lr=3e-4, estimator_steps=2, inner_optimizer="adam")
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        Student(VAE(), first_order=False, **args)


def test_the_parameters_are_views_of_phi_also_after_a_copy_or_a_move():
    student = make_student(steps=2)
    fakes = [torch.randn(8, 2, dtype=torch.float64) for _ in range(2)]
    for s in (student, copy.deepcopy(student), copy.deepcopy(student).float()):
        before = [p.detach().clone() for p in s.estimator.parameters()]
        phi = s.phi()
        assert phi.dtype == next(s.estimator.parameters()).dtype and phi.numel() == s.m.numel()
        s.update([x.to(phi.dtype) for x in fakes])
        torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in s.estimator.parameters()]), s.phi())
        assert all(not torch.equal(p, b) for p, b in zip(s.estimator.parameters(), before))
    assert float(student.t) == 6


def test_a_graph_through_the_parameters_before_an_update_cannot_backpropagate_after_it():
    student = make_student(steps=1)
    loss = student.estimator(torch.randn(8, 2, dtype=torch.float64)).mean()
    student.update([torch.randn(8, 2, dtype=torch.float64)])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_parameters_changed_after_the_student_was_built_are_named():
    student = make_student(steps=1)
    module, attr = next((m, n) for m in student.estimator.modules() for n, _ in m.named_parameters(recurse=False))
    setattr(module, attr, torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)))
    with pytest.raises(RuntimeError, match="parameters changed after the Student was built"):
        student.update([torch.randn(8, 2, dtype=torch.float64)])
