"""LBT's unroll written with torch.func transforms, so that torch.compile can fuse it into one graph."""

import time
from collections.abc import Callable

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch._dynamo.exc import TorchDynamoException
from torch.func import functional_call, grad_and_value

from lbt_lightning.unroll import objectives
from lbt_lightning.unroll.backends import ReduceGrads, UnrollBackend, draw
from lbt_lightning.unroll.objectives import FLAT, AdamConfig, Criterion, InnerState, Params, Unrolled

COMPILE_ERRORS: tuple[type[Exception], ...] = (TorchDynamoException,)
try:
    from torch._inductor.exc import InductorError

    COMPILE_ERRORS += (InductorError,)
except ImportError:  # older torch: Inductor's errors reach us as BackendCompilerFailed
    pass


class CompileError(RuntimeError):
    """The first call of a compiled function failed in torch.compile (tracing or code generation)."""

    def __init__(self, reason: str):
        super().__init__(f"unroll_backend='compiled': {reason}; use unroll_backend='eager'")
        self.reason = reason


class CompiledUnroll(UnrollBackend):
    """The unroll of ``mean log p_φ(x)`` as functions of tensors (the parameters and Adam moments
    as flat vectors), with the K fake batches of a pass drawn up front, so that each pass is one
    graph.

    ``update`` is the estimator's real training (no graph): one compiled call per step, or, with
    ``reduce_grads`` (e.g. a DDP all-reduce), one call for the gradient and one for the step
    with ``reduce_grads`` run eagerly between them.

    ``loss`` computes the generator's loss *and its gradient with respect to the fake batches*
    in one forward-only pass (grad of grad: ``torch.compile`` cannot differentiate a graph that
    itself contains a backward, but it can compile one that computes both), and hands that
    gradient to autograd, which carries it on through the generator as usual (so DDP's gradient
    hooks on the generator fire as in eager mode). Memory stays O(K) activations. The criterion
    is traced into that graph: it must be a function torch.compile can trace.

    Arguments:
        estimator, inner_optimizer, first_order, adam: As in :class:`UnrollBackend`.
        compiled: Wrap both passes in ``torch.compile``; the first call of each compiles (on 2
            CPU cores a minute or more; logged, and cached on disk by Inductor for later runs).
            Random draws inside the estimator (the VAE's ε) use ATen's generator
            (``fallback_random``), so a seed gives the same numbers as without compiling.
            ``False`` runs the same torch.func code eagerly (for tests).
        compile_backend: ``torch.compile`` backend; ``"aot_eager"`` traces without code
            generation (fast to build, for tests).
        mode: ``torch.compile`` mode. Nothing here is CPU-specific: on CUDA the default Inductor
            backend generates Triton kernels. ``"reduce-overhead"`` adds CUDA graphs (the shapes
            are static: one batch size, K fixed); it is not offered through ``unroll_backend``
            because the teaching gradients outlive the next graph replay, which CUDA graph trees
            may overwrite: ``benchmarks/gpu_check.py`` tries it and reports a failure as such.
        cpp_wrapper: Inductor's ``cpp_wrapper`` (the compiled graphs called from C++, not
            Python); None: on CPU only, where it saves 3-4 ms of a 55 ms ring LBT iteration for
            3 s more compilation. The profiler then no longer sees the graphs' matmuls apart.
    """

    def __init__(
        self,
        estimator: nn.Module,
        *,
        inner_optimizer: objectives.InnerOptimizer = "adam",
        first_order: bool = False,
        adam: AdamConfig = AdamConfig(),
        compiled: bool = True,
        compile_backend: str = "inductor",
        mode: str | None = None,
        cpp_wrapper: bool | None = None,
    ):
        super().__init__(estimator, inner_optimizer=inner_optimizer, first_order=first_order, adam=adam)
        self.compiled, self.compile_backend, self.mode = compiled, compile_backend, mode
        self.cpp_wrapper = cpp_wrapper
        self.compile_seconds: dict[str, float] = {}
        self._fns: dict[str, dict[str, Callable]] = {}  # per device type, built on first use

    def _functions(self, device_type: str) -> dict[str, Callable]:
        if device_type in self._fns:
            return self._fns[device_type]
        fns = {
            "update": self._update_impl,
            "grad": self._grad_impl,
            "step": self._step_impl,
            "teaching": self._teach_impl,
        }
        if self.compiled:
            kwargs = {"fullgraph": True, "backend": self.compile_backend, "mode": self.mode}
            if self.compile_backend == "inductor":
                # fallback_random: draw the estimator's noise with ATen's generator, as eager does;
                # torch.compile takes a mode or options, so the mode's own options go in too
                from torch._inductor import list_mode_options  # imported on use: a heavy import

                options = (list_mode_options(self.mode) if self.mode else {}) | {"fallback_random": True}
                if self.cpp_wrapper if self.cpp_wrapper is not None else device_type == "cpu":
                    options["cpp_wrapper"] = True
                kwargs |= {"mode": None, "options": options}
            fns = {name: torch.compile(fn, **kwargs) for name, fn in fns.items()}
        self._fns[device_type] = fns
        return fns

    def __getstate__(self) -> dict:
        # compiled functions neither pickle nor deep-copy; a copy compiles its own on first use
        return {k: v for k, v in self.__dict__.items() if k != "_fns"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fns = {}

    def _call(self, name: str, *args):
        """The (compiled) function ``name`` on ``args``; its first compiled call is timed and logged."""
        fn = self._functions(next(self.estimator.parameters()).device.type)[name]
        if not self.compiled or name in self.compile_seconds:
            return fn(*args)
        start = time.perf_counter()
        try:
            out = fn(*args)
        except COMPILE_ERRORS as error:
            detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CompileError(
                f"torch.compile cannot compile {type(self.estimator).__name__}.log_prob's {name} function ({detail})"
            ) from error
        self.compile_seconds[name] = time.perf_counter() - start
        rank_zero_info(f"torch.compile of the estimator's {name} function took {self.compile_seconds[name]:.1f} s")
        return out

    # The functions below take the parameters and Adam moments as flat vectors (ParamLayout).

    def _log_prob(self, phi: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.estimator, self.layout.unflatten(phi), (x,)).mean()

    def _grad_impl(self, phi: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return grad_and_value(self._log_prob)(phi, x)

    def _step_impl(self, phi: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: Tensor, lr: float):
        state = InnerState({FLAT: m}, {FLAT: v}, t)
        new, state = objectives.inner_step({FLAT: phi}, [grad], state, lr, self.inner_optimizer, self.adam)
        return new[FLAT], state.m[FLAT], state.v[FLAT], state.t

    def _update_impl(self, phi: Tensor, m: Tensor, v: Tensor, t: Tensor, x: Tensor, lr: float):
        grad, value = self._grad_impl(phi, x)
        return *self._step_impl(phi, grad, m, v, t, lr), value

    def _teach_impl(self, fakes: list[Tensor], real: Tensor, phi, m, v, t, lr: float, criterion: Criterion):
        def loss(fakes: list[Tensor]) -> Tensor:
            p, mm, vv, tt = phi, m, v, t
            for x in fakes:
                grad, _ = self._grad_impl(p.detach() if self.first_order else p, x)
                p, mm, vv, tt = self._step_impl(p, grad, mm, vv, tt, lr)
            return objectives.teaching_loss(self.estimator, self.layout.unflatten(p), real, criterion)

        grads, value = grad_and_value(loss)(fakes)
        return value, grads

    def _flat(self, params: Params, state: InnerState) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        flatten = self.layout.flatten
        return flatten(params).detach(), flatten(state.m).detach(), flatten(state.v).detach(), state.t

    def update(self, params, state, sample_fake, steps, lr, reduce_grads: ReduceGrads | None = None) -> Unrolled:
        with torch.no_grad():
            fakes = draw(sample_fake, steps)
            phi, m, v, t = self._flat(params, state)
            for x in fakes:
                if reduce_grads is None:  # one compiled call per step
                    phi, m, v, t, value = self._call("update", phi, m, v, t, x, lr)
                else:  # e.g. DDP's all-reduce, eagerly between the gradient and the step
                    grad, value = self._call("grad", phi, x)
                    (grad,) = reduce_grads([grad])
                    phi, m, v, t = self._call("step", phi, grad, m, v, t, lr)
        unflatten = self.layout.unflatten
        return Unrolled(unflatten(phi), InnerState(unflatten(m), unflatten(v), t), value)

    def loss(self, params, state, sample_fake, real, steps, lr, criterion=objectives.negative_mean) -> Tensor:
        fakes = draw(sample_fake, steps)
        flat = self._flat(params, state)
        run = lambda xs: self._call("teaching", xs, real, *flat, lr, criterion)  # noqa: E731
        return _TeachingLoss.apply(run, *fakes)


class _TeachingLoss(torch.autograd.Function):
    """A loss whose gradient with respect to its inputs was computed with its value."""

    @staticmethod
    def forward(ctx, run: Callable, *fakes: Tensor) -> Tensor:
        value, grads = run([x.detach() for x in fakes])
        ctx.save_for_backward(*grads)
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return (None, *(grad_output * g for g in ctx.saved_tensors))
