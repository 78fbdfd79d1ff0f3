"""LBT's unroll written with torch.func transforms, so that torch.compile can fuse it into one graph."""

import time
from collections.abc import Callable

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from lbt_lightning import objectives
from lbt_lightning.objectives import AdamConfig, Criterion, InnerState, Params, Unrolled
from lbt_lightning.unroll_backends import ReduceGrads, UnrollBackend


class CompiledUnroll(UnrollBackend):
    """The unroll of ``mean log p_φ(x)`` as functions of tensors, with the K fake batches of a
    pass drawn up front (before the estimator's own noise), so that each pass is one graph.

    ``update`` is the estimator's real training (no graph): per step one call computes the
    gradient and another the optimizer step, with ``reduce_grads`` (e.g. a DDP all-reduce) run
    eagerly between them (fusing the two calls measured no faster).

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
    ):
        super().__init__(estimator, inner_optimizer=inner_optimizer, first_order=first_order, adam=adam)
        self.compiled, self.compile_backend, self.mode = compiled, compile_backend, mode
        self.compile_seconds: dict[str, float] = {}
        self._build()

    def _build(self) -> None:
        self._fns = {"grad": self._grad_impl, "step": self._step_impl, "teaching": self._teach_impl}
        if self.compiled:
            kwargs = {"fullgraph": True, "backend": self.compile_backend, "mode": self.mode}
            if self.compile_backend == "inductor":
                # fallback_random: draw the estimator's noise with ATen's generator, as eager does;
                # torch.compile takes a mode or options, so the mode's own options go in too
                from torch._inductor import list_mode_options  # imported on use: a heavy import

                options = (list_mode_options(self.mode) if self.mode else {}) | {"fallback_random": True}
                kwargs |= {"mode": None, "options": options}
            self._fns = {name: torch.compile(fn, **kwargs) for name, fn in self._fns.items()}

    def __getstate__(self) -> dict:
        # compiled functions neither pickle nor deep-copy; a copy compiles its own on first use
        return {k: v for k, v in self.__dict__.items() if k != "_fns"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()

    def _call(self, name: str, *args):
        """The (compiled) function ``name`` on ``args``; its first compiled call is timed and logged."""
        if not self.compiled or name in self.compile_seconds:
            return self._fns[name](*args)
        start = time.perf_counter()
        try:
            out = self._fns[name](*args)
        except torch._dynamo.exc.Unsupported as error:
            reason = str(error).strip().splitlines()[0]
            raise RuntimeError(
                f"unroll_backend='compiled': torch.compile cannot trace {type(self.estimator).__name__}.log_prob "
                f"({reason}); use unroll_backend='eager'"
            ) from error
        self.compile_seconds[name] = time.perf_counter() - start
        rank_zero_info(f"torch.compile of the estimator's {name} function took {self.compile_seconds[name]:.1f} s")
        return out

    def _log_prob(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.estimator, params, (x,)).mean()

    def _grad_impl(self, params: Params, x: Tensor) -> tuple[list[Tensor], Tensor]:
        grads, value = grad_and_value(self._log_prob)(params, x)
        return list(grads.values()), value

    def _unroll(self, params: Params, state: InnerState, fakes: list[Tensor], lr: float) -> Params:
        for x in fakes:
            at = {k: p.detach() for k, p in params.items()} if self.first_order else params
            grads, _ = self._grad_impl(at, x)
            params, state = self._step_impl(params, grads, state, lr)
        return params

    def _step_impl(self, params: Params, grads: list[Tensor], state: InnerState, lr: float):
        return objectives.inner_step(params, grads, state, lr, self.inner_optimizer, self.adam)

    def _teach_impl(
        self, fakes: list[Tensor], real: Tensor, params: Params, state: InnerState, lr: float, criterion: Criterion
    ):
        def loss(fakes: list[Tensor]) -> Tensor:
            return objectives.teaching_loss(self.estimator, self._unroll(params, state, fakes, lr), real, criterion)

        grads, value = grad_and_value(loss)(fakes)
        return value, grads

    def update(self, params, state, sample_fake, steps, lr, reduce_grads: ReduceGrads | None = None) -> Unrolled:
        fakes = [sample_fake().detach() for _ in range(steps)]
        with torch.no_grad():
            for x in fakes:
                grads, value = self._call("grad", params, x)
                if reduce_grads is not None:
                    grads = reduce_grads(grads)
                params, state = self._call("step", params, grads, state, lr)
        return Unrolled(params, state, value)

    def loss(self, params, state, sample_fake, real, steps, lr, criterion=objectives.negative_mean) -> Tensor:
        fakes = [sample_fake() for _ in range(steps)]
        detached = {k: p.detach() for k, p in params.items()}
        run = lambda xs: self._call("teaching", xs, real, detached, state, lr, criterion)  # noqa: E731
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
