"""The fast unroll (torch.func, optionally compiled) gives the eager unroll's gradients and updates."""

import copy

import pytest
import torch
from test_methods import changed, fit
from test_unroll import TinyGenerator, make_student

from lbt_lightning.estimators import VAE, Flow
from lbt_lightning.methods import LBT
from lbt_lightning.networks import MLPGenerator
from lbt_lightning.unroll.compiled import CompiledUnroll


def teaching_grads(student, generator, zs, real, fast=None):
    """Generator gradient of the teaching loss; the same z and the same estimator noise either way."""
    torch.manual_seed(11)
    fakes = [generator(z) for z in zs]
    if fast is None:
        loss = student.teaching_loss(fakes, real)
    else:
        loss = fast.teaching_loss(student.phi(), student.state(), fakes, real, student.unroll_lr)
    return loss, torch.autograd.grad(loss, list(generator.parameters()))


def assert_same(expected, actual, **tolerance):
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("first_order", [False, True])
def test_teaching_loss_and_gradient_are_the_eager_ones(inner_optimizer, first_order):
    student, generator = make_student(inner_optimizer, first_order, steps=3), TinyGenerator().double()
    zs, real = [torch.randn(16, 3, dtype=torch.float64) for _ in range(3)], torch.randn(32, 2, dtype=torch.float64)
    loss, grads = teaching_grads(student, generator, zs, real)
    fast_loss, fast_grads = teaching_grads(student, generator, zs, real, CompiledUnroll(student, compiled=False))
    torch.testing.assert_close(fast_loss, loss, rtol=1e-12, atol=1e-12)
    assert_same(grads, fast_grads, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
def test_update_is_the_eager_one_and_reduces_every_gradient(inner_optimizer):
    student = make_student(inner_optimizer, steps=2)
    student.estimator_steps = 2
    fakes = [torch.randn(16, 2, dtype=torch.float64) for _ in range(4)]
    calls = []

    def reduce_grad(grad):  # stands in for a DDP all-reduce: the update must use what it returns
        calls.append(grad.numel())
        return 2 * grad

    eager = copy.deepcopy(student)
    torch.manual_seed(5)
    eager.update(fakes, reduce_grad=reduce_grad)
    torch.manual_seed(5)
    phi, state, _ = CompiledUnroll(student, compiled=False).update(
        student.phi(), student.state(), fakes, student.estimator_lr, reduce_grad
    )
    n_params = sum(p.numel() for p in student.estimator.parameters())
    assert calls == [n_params] * 8  # one flat gradient of every parameter per step
    assert_same([eager.phi(), eager.m, eager.v], [phi, state.m, state.v], rtol=1e-12, atol=1e-12)
    assert float(state.t) == float(eager.t)


def test_a_copy_compiles_its_own_functions_for_its_own_estimator():
    student = make_student(steps=2)
    student.compiled = CompiledUnroll(student, compile_backend="aot_eager")
    copied = copy.deepcopy(student)
    assert copied.compiled.student is copied
    assert copied.compiled._functions("cpu")["teaching"] is not student.compiled._functions("cpu")["teaching"]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_matches_eager_in_float32(backend, device):
    """torch.compile (inductor: the shipped setting, slow to build) changes nothing but rounding."""
    student, generator = make_student(steps=2).float().to(device), TinyGenerator().to(device)
    zs, real = [torch.randn(16, 3, device=device) for _ in range(2)], torch.randn(32, 2, device=device)
    loss, grads = teaching_grads(student, generator, zs, real)
    fast = CompiledUnroll(student, compile_backend=backend)
    fast_loss, fast_grads = teaching_grads(student, generator, zs, real, fast)
    torch.testing.assert_close(fast_loss, loss, rtol=1e-5, atol=1e-5)
    assert_same(grads, fast_grads, rtol=1e-4, atol=1e-6)
    assert fast.compile_seconds["teaching"] > 0

    fakes = [torch.randn(16, 2, device=device) for _ in range(2)]
    eager = copy.deepcopy(student)
    torch.manual_seed(5)
    eager.update(fakes)
    torch.manual_seed(5)
    phi, state, _ = fast.update(student.phi(), student.state(), fakes, student.estimator_lr)
    assert_same([eager.phi(), eager.m], [phi, state.m], rtol=1e-5, atol=1e-6)


def compiled_student(student, **kwargs):
    """``student``'s twin on the compiled backend (inductor compiles for minutes on 2 CPU cores)."""
    twin = copy.deepcopy(student)
    twin.compiled = CompiledUnroll(twin, **kwargs)
    return twin


def test_student_on_the_compiled_backend_gives_the_eager_results():
    student, generator = make_student(steps=2), TinyGenerator().double()
    twin = compiled_student(student, compiled=False)  # the wiring; compiling is tested above
    zs, real = [torch.randn(16, 3, dtype=torch.float64) for _ in range(2)], torch.randn(32, 2, dtype=torch.float64)
    results = []
    for s in (student, twin):
        torch.manual_seed(3)
        loss = s.teaching_loss([generator(z) for z in zs], real)
        results.append((loss, torch.autograd.grad(loss, list(generator.parameters()))))
        with torch.no_grad():
            s.update([generator(z) for z in zs * 2], reduce_grad=lambda grad: grad)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    assert_same(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)
    assert_same(student.state_dict().values(), twin.state_dict().values(), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_lbt_trains_on_the_compiled_backend():
    model = LBT(MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16]), unroll_steps=2, estimator_steps=1)
    model.student = compiled_student(model.student, compile_backend="aot_eager")
    before = copy.deepcopy(model)
    fit(model, iterations=2)
    assert changed(before.generator, model.generator) and changed(before.estimator, model.estimator)
    assert float(model.student.t) == 4 and set(model.student.compiled.compile_seconds) == {"update", "teaching"}


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unroll_backend"):
        LBT(MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16]), unroll_backend="jit")


def test_an_estimator_that_cannot_be_compiled_is_named():
    student = make_student(estimator=Flow(data_shape=[2], flow="maf", transforms=1, hidden=[4]))
    fast = CompiledUnroll(student, compile_backend="aot_eager")
    with pytest.raises(RuntimeError, match="Flow.*unroll_backend='eager'"):
        fast.update(student.phi(), student.state(), [torch.randn(8, 2, dtype=torch.float64)], 1e-3)


def test_auto_of_older_checkpoints_runs_eager_with_a_warning():
    with pytest.warns(UserWarning, match="unroll_backend='auto'.*removed.*'eager'"):
        model = LBT(MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16]), unroll_backend="auto")
    assert model.student.unroll_backend == "eager"
