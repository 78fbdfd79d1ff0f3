"""The fast unroll (torch.func, optionally compiled) gives the eager unroll's gradients and updates."""

import copy

import pytest
import torch
from test_methods import changed, fit
from test_unroll import TinyGenerator, make_teacher

from lbt_lightning.estimators import VAE, Flow
from lbt_lightning.methods import LBT
from lbt_lightning.networks import MLPGenerator
from lbt_lightning.unroll import objectives
from lbt_lightning.unroll.compiled import CompiledUnroll


def fast_for(teacher, **kwargs):
    return CompiledUnroll(
        teacher.estimator, inner_optimizer=teacher.inner_optimizer, first_order=teacher.first_order, **kwargs
    )


def teaching_grads(teacher, generator, zs, real, fast=None):
    """Generator gradient of the teaching loss; the same z and the same estimator noise either way."""
    torch.manual_seed(11)
    if fast is None:
        feed = iter(zs)
        loss = teacher.loss(lambda: generator(next(feed)), real)
    else:
        params = objectives.detached_params(teacher.estimator)
        feed = iter(zs)
        loss = fast.loss(params, teacher.state(), lambda: generator(next(feed)), real, len(zs), teacher.unroll_lr)
    return loss, torch.autograd.grad(loss, list(generator.parameters()))


def assert_same(expected, actual, **tolerance):
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("first_order", [False, True])
def test_teaching_loss_and_gradient_are_the_eager_ones(inner_optimizer, first_order):
    teacher, generator = make_teacher(inner_optimizer, first_order, steps=3), TinyGenerator().double()
    zs, real = [torch.randn(16, 3, dtype=torch.float64) for _ in range(3)], torch.randn(32, 2, dtype=torch.float64)
    loss, grads = teaching_grads(teacher, generator, zs, real)
    fast_loss, fast_grads = teaching_grads(teacher, generator, zs, real, fast_for(teacher, compiled=False))
    torch.testing.assert_close(fast_loss, loss, rtol=1e-12, atol=1e-12)
    assert_same(grads, fast_grads, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
def test_update_is_the_eager_one_and_reduces_every_gradient(inner_optimizer):
    teacher = make_teacher(inner_optimizer, steps=2)
    teacher.estimator_steps = 2
    fakes = [torch.randn(16, 2, dtype=torch.float64) for _ in range(4)]
    calls = []

    def reduce_grads(grads):  # stands in for a DDP all-reduce: the update must use what it returns
        calls.append([g.numel() for g in grads])
        return [2 * g for g in grads]

    eager = copy.deepcopy(teacher)
    torch.manual_seed(5)
    feed = iter(fakes)
    eager.update(lambda: next(feed), reduce_grads=reduce_grads)
    torch.manual_seed(5)
    feed = iter(fakes)
    result = fast_for(teacher, compiled=False).update(
        objectives.detached_params(teacher.estimator),
        teacher.state(),
        lambda: next(feed),
        len(fakes),
        teacher.estimator_lr,
        reduce_grads,
    )
    n_params = sum(p.numel() for p in teacher.estimator.parameters())
    assert calls == [[n_params]] * 8  # one flat gradient of every parameter per step
    assert_same(eager.estimator.parameters(), result.params.values(), rtol=1e-12, atol=1e-12)
    assert_same(eager.state().m.values(), result.state.m.values(), rtol=1e-12, atol=1e-12)
    assert_same(eager.state().v.values(), result.state.v.values(), rtol=1e-12, atol=1e-12)
    assert float(result.state.t) == float(eager.t)


def test_a_copy_compiles_its_own_functions_for_its_own_estimator():
    teacher = make_teacher(steps=2)
    fast = fast_for(teacher, compile_backend="aot_eager")
    copied = copy.deepcopy({"estimator": teacher.estimator, "fast": fast})
    assert copied["fast"].estimator is copied["estimator"]
    assert copied["fast"]._functions("cpu")["teaching"] is not fast._functions("cpu")["teaching"]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_matches_eager_in_float32(backend, device):
    """torch.compile (inductor: the shipped setting, slow to build) changes nothing but rounding."""
    teacher, generator = make_teacher(steps=2).float().to(device), TinyGenerator().to(device)
    zs, real = [torch.randn(16, 3, device=device) for _ in range(2)], torch.randn(32, 2, device=device)
    loss, grads = teaching_grads(teacher, generator, zs, real)
    fast = fast_for(teacher, compile_backend=backend)
    fast_loss, fast_grads = teaching_grads(teacher, generator, zs, real, fast)
    torch.testing.assert_close(fast_loss, loss, rtol=1e-5, atol=1e-5)
    assert_same(grads, fast_grads, rtol=1e-4, atol=1e-6)
    assert fast.compile_seconds["teaching"] > 0

    fakes = [torch.randn(16, 2, device=device) for _ in range(2)]
    eager = copy.deepcopy(teacher)
    torch.manual_seed(5)
    feed = iter(fakes)
    eager.update(lambda: next(feed))
    torch.manual_seed(5)
    feed = iter(fakes)
    params = objectives.detached_params(teacher.estimator)
    result = fast.update(params, teacher.state(), lambda: next(feed), len(fakes), teacher.estimator_lr)
    assert_same(eager.estimator.parameters(), result.params.values(), rtol=1e-5, atol=1e-6)
    assert_same(eager.state().m.values(), result.state.m.values(), rtol=1e-5, atol=1e-6)


def compiled_teacher(teacher, **kwargs):
    """``teacher``'s twin on the compiled backend (inductor compiles for minutes on 2 CPU cores)."""
    twin = copy.deepcopy(teacher)
    twin.unroll_backend = "compiled"
    twin.backend = fast_for(twin, **kwargs)
    return twin


def test_teacher_on_the_compiled_backend_gives_the_eager_results():
    teacher, generator = make_teacher(steps=2), TinyGenerator().double()
    twin = compiled_teacher(teacher, compiled=False)  # the wiring; compiling is tested above
    zs, real = [torch.randn(16, 3, dtype=torch.float64) for _ in range(2)], torch.randn(32, 2, dtype=torch.float64)
    results = []
    for t in (teacher, twin):
        torch.manual_seed(3)
        feed = iter(zs)  # the samplers draw nothing, so both backends see the same estimator noise
        loss = t.loss(lambda feed=feed: generator(next(feed)), real)
        results.append((loss, torch.autograd.grad(loss, list(generator.parameters()))))
        feed = iter(zs * 2)
        t.update(lambda feed=feed: generator(next(feed)), reduce_grads=lambda grads: grads)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    assert_same(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)
    assert_same(teacher.state_dict().values(), twin.state_dict().values(), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_lbt_trains_on_the_compiled_backend():
    model = LBT(MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16]), unroll_steps=2, estimator_steps=1)
    model.teacher = compiled_teacher(model.teacher, compile_backend="aot_eager")
    before = copy.deepcopy(model)
    fit(model, iterations=2)
    assert changed(before.generator, model.generator) and changed(before.estimator, model.estimator)
    assert float(model.teacher.t) == 4 and set(model.teacher.backend.compile_seconds) == {"update", "teaching"}


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unroll_backend"):
        LBT(MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16]), unroll_backend="jit")


def test_an_estimator_that_cannot_be_compiled_is_named():
    flow = Flow(data_shape=[2], flow="maf", transforms=1, hidden=[4])
    fast = CompiledUnroll(flow, compile_backend="aot_eager")
    params = objectives.detached_params(flow)
    state = objectives.InnerState(*({k: torch.zeros_like(p) for k, p in params.items()} for _ in "mv"), torch.zeros(()))
    with pytest.raises(RuntimeError, match="Flow.*unroll_backend='eager'"):
        fast.update(params, state, lambda: torch.randn(8, 2), 1, 1e-3)
