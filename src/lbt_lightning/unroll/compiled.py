"""LBT's unroll under torch.func transforms, so that torch.compile can fuse each pass into one graph.

The same :func:`~lbt_lightning.unroll.inner.unroll` and :func:`~lbt_lightning.unroll.inner.inner_step`
as the eager path, with ``torch.func.grad_and_value`` for the inner gradient."""

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch._dynamo.exc import TorchDynamoException
from torch.func import grad_and_value

from lbt_lightning.unroll.inner import Criterion, InnerState, inner_step, negative_mean, unroll

if TYPE_CHECKING:
    from lbt_lightning.unroll.inner import Student

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


class CompiledUnroll:
    """The student's update and teaching loss as functions of flat tensors (φ, m, v, t and the K
    fake batches of a pass), so that each pass is one graph.

    ``update`` is the estimator's real training (no graph): one compiled call per step, or, with
    ``reduce_grad`` (e.g. a DDP all-reduce), one call for the gradient and one for the step with
    ``reduce_grad`` run eagerly between them.

    ``teaching_loss`` computes the generator's loss *and its gradient with respect to the fake
    batches* in one forward-only pass (grad of grad: ``torch.compile`` cannot differentiate a
    graph that itself contains a backward, but it can compile one that computes both), and hands
    that gradient to autograd, which carries it on through the generator as usual (so DDP's
    gradient hooks on the generator fire as in eager mode). Memory stays O(K) activations. The
    criterion is traced into that graph: it must be a function torch.compile can trace.

    Arguments:
        student: The :class:`~lbt_lightning.unroll.inner.Student` whose estimator, optimizer and
            ``first_order`` it uses.
        compiled: Wrap the passes in ``torch.compile``; the first call of each compiles (on 2
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
        student: "Student",
        *,
        compiled: bool = True,
        compile_backend: str = "inductor",
        mode: str | None = None,
        cpp_wrapper: bool | None = None,
    ):
        self.student = student
        self.compiled, self.compile_backend, self.mode = compiled, compile_backend, mode
        self.cpp_wrapper = cpp_wrapper
        self.compile_seconds: dict[str, float] = {}
        self._fns: dict[str, dict[str, Callable]] = {}  # per device type, built on first use

    def _functions(self, device_type: str) -> dict[str, Callable]:
        if device_type in self._fns:
            return self._fns[device_type]
        fns = {
            "update": self._update_impl,
            "gradient": self._gradient_impl,
            "step": self._step_impl,
            "teaching": self._teaching_impl,
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
        fn = self._functions(self.student.t.device.type)[name]
        if not self.compiled or name in self.compile_seconds:
            return fn(*args)
        start = time.perf_counter()
        try:
            out = fn(*args)
        except COMPILE_ERRORS as error:
            detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
            estimator = type(self.student.estimator).__name__
            reason = f"torch.compile cannot compile {estimator}.log_prob's {name} function ({detail})"
            raise CompileError(reason) from error
        self.compile_seconds[name] = time.perf_counter() - start
        rank_zero_info(f"torch.compile of the estimator's {name} function took {self.compile_seconds[name]:.1f} s")
        return out

    # The functions below take φ, m and v as flat vectors.

    def _gradient_impl(self, phi: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return grad_and_value(lambda p: self.student.log_prob(p, x).mean())(phi)

    def _unroll(self, phi: Tensor, state: InnerState, fakes: Sequence[Tensor], lr: float, first_order: bool):
        s = self.student
        return unroll(
            self._gradient_impl, phi, state, fakes, lr=lr, inner_optimizer=s.inner_optimizer, first_order=first_order,
            adam=s.adam,
        )  # fmt: skip

    def _step_impl(self, phi: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: Tensor, lr: float):
        s = self.student
        phi, state = inner_step(phi, grad, InnerState(m, v, t), lr, s.inner_optimizer, s.adam)
        return phi, *state

    def _update_impl(self, phi: Tensor, m: Tensor, v: Tensor, t: Tensor, x: Tensor, lr: float):
        phi, state, value = self._unroll(phi, InnerState(m, v, t), [x], lr, first_order=False)
        return phi, *state, value

    def _teaching_impl(self, fakes: list[Tensor], real: Tensor, phi, m, v, t, lr: float, criterion: Criterion):
        def loss(fakes: list[Tensor]) -> Tensor:
            phi_k, _, _ = self._unroll(phi, InnerState(m, v, t), fakes, lr, self.student.first_order)
            return criterion(self.student.log_prob(phi_k, real))

        grads, value = grad_and_value(loss)(fakes)
        return value, grads

    def update(
        self,
        phi: Tensor,
        state: InnerState,
        fakes: Sequence[Tensor],
        lr: float,
        reduce_grad: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, InnerState, Tensor]:
        """:meth:`Student.update`'s steps: φ and the state after them, and the last objective."""
        m, v, t = state
        with torch.no_grad():
            for x in fakes:
                if reduce_grad is None:  # one compiled call per step
                    phi, m, v, t, value = self._call("update", phi, m, v, t, x, lr)
                else:  # e.g. DDP's all-reduce, eagerly between the gradient and the step
                    grad, value = self._call("gradient", phi, x)
                    phi, m, v, t = self._call("step", phi, reduce_grad(grad), m, v, t, lr)
        return phi, InnerState(m, v, t), value

    def teaching_loss(
        self,
        phi: Tensor,
        state: InnerState,
        fakes: Sequence[Tensor],
        real: Tensor,
        lr: float,
        criterion: Criterion = negative_mean,
    ) -> Tensor:
        """:meth:`Student.teaching_loss`, differentiable with respect to ``fakes``."""
        run = lambda xs: self._call("teaching", xs, real, phi, *state, lr, criterion)  # noqa: E731
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
