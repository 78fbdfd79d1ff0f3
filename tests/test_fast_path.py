"""Every speed-up of the LBT iteration against its reference: the flat-vector unroll against a
per-parameter one, one generator call for k batches against k calls, the compiled backend's
Lightning iteration against the eager one."""

import pytest
import pytorch_lightning as pl
import torch
from test_methods import fit
from test_unroll import TinyGenerator, make_student
from torch import nn
from torch.func import functional_call
from trainers import quiet_trainer

from lbt_lightning.data import RingDataModule
from lbt_lightning.estimators import VAE, Flow
from lbt_lightning.methods import LBT, LBTGAN
from lbt_lightning.networks import DCGANGenerator, MLPDiscriminator, MLPGenerator
from lbt_lightning.unroll import inner
from lbt_lightning.unroll.compiled import CompileError


def per_parameter_unroll(estimator, params, state, fakes, lr, inner_optimizer, first_order, create_graph):
    """The unroll written the obvious way: one optimizer update per parameter tensor."""
    sizes = [p.numel() for p in params.values()]
    m, v = ({k: x.view_as(params[k]) for k, x in zip(params, moment.split(sizes))} for moment in (state.m, state.v))
    t = state.t
    for x in fakes:
        at = {k: p.detach().requires_grad_() for k, p in params.items()} if first_order or not create_graph else params
        value = functional_call(estimator, at, (x,)).mean()
        grads = torch.autograd.grad(value, list(at.values()), create_graph=create_graph)
        new = {}
        for (k, p), g in zip(params.items(), grads, strict=True):
            new[k], after = inner.inner_step(
                p, g, inner.InnerState(m[k], v[k], t), lr, inner_optimizer, inner.AdamConfig()
            )
            m[k], v[k] = after.m, after.v
        params, t = new, after.t
    return params, m, v, t


@pytest.mark.parametrize("inner_optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("create_graph", [True, False])
def test_flat_unroll_is_the_per_parameter_unroll(inner_optimizer, first_order, create_graph):
    student, generator = make_student(inner_optimizer, first_order, steps=3), TinyGenerator().double()
    zs, real = torch.randn(3, 16, 3, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    torch.manual_seed(4)  # the same VAE noise
    gradient = inner.autograd_gradient(student.log_prob, create_graph=create_graph)
    phi, state, _ = inner.unroll(
        gradient, student.phi(), student.state(), [generator(z) for z in zs], lr=0.05,
        inner_optimizer=inner_optimizer, first_order=first_order,
    )  # fmt: skip
    flat_grads = (
        torch.autograd.grad(-student.log_prob(phi, real).mean(), list(generator.parameters())) if create_graph else ()
    )

    torch.manual_seed(4)
    params = {k: p.detach().requires_grad_() for k, p in student.estimator.named_parameters()}
    ref, m, v, t = per_parameter_unroll(
        student.estimator, params, student.state(), [generator(z) for z in zs], 0.05, inner_optimizer, first_order,
        create_graph,
    )  # fmt: skip
    loss = -functional_call(student.estimator, ref, (real,)).mean()
    ref_grads = torch.autograd.grad(loss, list(generator.parameters())) if create_graph else ()

    flat, flat_m, flat_v = (student.layout.unflatten(x) for x in (phi, state.m, state.v))
    for name in ref:
        torch.testing.assert_close(flat[name], ref[name], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(flat_m[name], m[name], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(flat_v[name], v[name], rtol=1e-13, atol=1e-13)
        assert flat[name].shape == ref[name].shape
    assert float(state.t) == float(t)
    for a, b in zip(flat_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_parameters_of_two_dtypes_are_refused():
    with pytest.raises(ValueError, match="one dtype and device"):
        inner.ParamLayout({"a": torch.zeros(2), "b": torch.zeros(2, dtype=torch.float64)})


class Noise:
    """Hands out consecutive rows of one fixed noise matrix, however many are asked for at a time."""

    def __init__(self, z: torch.Tensor):
        self.z, self.i = z, 0

    def __call__(self, m: int) -> torch.Tensor:
        self.i += m
        return self.z[self.i - m : self.i]


@pytest.mark.parametrize("grad", [True, False])
def test_one_generator_call_for_k_batches_gives_the_k_calls(grad):
    model, n, k = LBT(MLPGenerator(z_dim=16, hidden=[32]), VAE(latent_dim=4, hidden=[8])), 8, 3
    generator, z = model.generator, torch.randn(k * n, 16)
    model.noise = Noise(z)
    batched = model.sample_batches(n, k, grad=True)  # one call for the teaching loss
    model.noise = Noise(z)
    single = [model.sample(n, grad=True) for _ in range(k)]
    if not grad:
        model.noise = Noise(z)
        batched, single = model.sample_batches(n, k), [x.detach() for x in single]
    assert len(batched) == k and all(x.shape == (n, 2) for x in batched)
    for a, b in zip(batched, single, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert a.requires_grad == b.requires_grad == grad
    if grad:  # the gradient flows back through the one call as through the k
        weights = torch.randn(k, n, 2)
        g_batched = torch.autograd.grad((torch.stack(batched) * weights).sum(), list(generator.parameters()))
        g_single = torch.autograd.grad((torch.stack(single) * weights).sum(), list(generator.parameters()))
        for a, b in zip(g_batched, g_single, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_generators_with_batch_statistics_are_called_per_batch():
    estimator = VAE(latent_dim=4, hidden=[8])
    assert LBT(MLPGenerator(z_dim=8, hidden=[8]), estimator).batch_independent
    dcgan = LBT(DCGANGenerator(z_dim=8, image_size=8, width=16), VAE(data_shape=[3, 8, 8], hidden=[8]))
    assert not dcgan.batch_independent  # BatchNorm without running statistics, also in eval mode
    assert not dcgan.eval().batch_independent
    generator = MLPGenerator(z_dim=8, hidden=[8])
    generator.batch_independent = False  # a generator's own declaration wins
    assert not LBT(generator, estimator).batch_independent
    tracked = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    tracked.z_dim = 8
    model = LBT(tracked, VAE(latent_dim=4, hidden=[8]))
    assert not model.batch_independent and model.eval().batch_independent


def two_iterations(method, backend):
    pl.seed_everything(3)
    generator, estimator = MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16])
    kwargs = dict(unroll_steps=2, estimator_steps=2, unroll_backend=backend)
    if method is LBT:
        model = LBT(generator, estimator, **kwargs)
    else:
        model = LBTGAN(generator, estimator, MLPDiscriminator(hidden=[16]), **kwargs)
    pl.seed_everything(5)
    fit(model, iterations=2)
    return model


@pytest.mark.slow  # 12 s of compiling; tests/test_compiled_unroll.py checks the same equality per call
@pytest.mark.parametrize("method", [LBT, LBTGAN])
def test_a_compiled_lightning_iteration_is_the_eager_one(method, quick_compile):
    """Both backends draw a pass's fake batches first, so one seed gives one run, to rounding."""
    eager, compiled = two_iterations(method, "eager"), two_iterations(method, "compiled")
    assert compiled.student.unroll_backend == "compiled" and eager.student.unroll_backend == "eager"
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    assert float(eager.student.t) == float(compiled.student.t) == 8


def flow_lbt(backend):
    flow = Flow(data_shape=[2], flow="maf", transforms=1, hidden=[4])
    return LBT(MLPGenerator(z_dim=8, hidden=[8]), flow, unroll_steps=2, estimator_steps=1, unroll_backend=backend)


def test_compiled_refuses_an_estimator_it_cannot_compile(quick_compile):
    model = flow_lbt("compiled")
    with pytest.raises(CompileError, match="Flow.*unroll_backend='eager'"):
        model.update_student(16)


@pytest.mark.parametrize("method", [LBT, LBTGAN])
def test_losses_are_logged_when_the_logger_writes_and_at_the_end(method):
    pl.seed_everything(0)
    generator, estimator = MLPGenerator(z_dim=8, hidden=[16]), VAE(latent_dim=4, hidden=[16])
    kwargs = dict(unroll_steps=1, estimator_steps=1)
    if method is LBT:
        model = LBT(generator, estimator, **kwargs)
    else:  # teaching on iterations 1, 4 and 7 only: its losses are carried to the logged iterations
        model = LBTGAN(generator, estimator, MLPDiscriminator(hidden=[16]), teach_every=3, **kwargs)
    logged, log = [], model.log
    model.log = lambda name, value, **kw: logged.append((model.global_step, name)) or log(name, value, **kw)
    trainer = quiet_trainer(7, log_every_n_steps=3)
    trainer.fit(model, RingDataModule(batch_size=32))
    assert sorted({i for i, _ in logged}) == [3, 6, 7]
    for i in (3, 6, 7):
        names = {name for j, name in logged if j == i}
        assert {"train/e_loss", "train/teach_loss", "train/g_loss", "train/skipped_steps"} <= names
    assert "train/teach_loss" in trainer.callback_metrics
