"""The estimator and its one persistent optimizer state, shared by the real update and the unroll,
and the ``teaching_loss`` hook of the methods that teach it."""

from collections.abc import Callable
from typing import Literal

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.lightning.precision import full_precision
from lbt_lightning.unroll import objectives
from lbt_lightning.unroll.backends import EagerUnroll, UnrollBackend
from lbt_lightning.unroll.compiled import CompiledUnroll, CompileError
from lbt_lightning.unroll.objectives import INNER_OPTIMIZERS, Criterion, InnerState

BACKENDS: dict[str, type[UnrollBackend]] = {"eager": EagerUnroll, "compiled": CompiledUnroll}
UNROLL_BACKENDS = ("auto", *BACKENDS)
AUTO_COMPILE_MIN_ITERATIONS = 2000
"""``unroll_backend="auto"`` compiles for a fit with at least this many teaching iterations left:
the break-even against a cold Inductor cache on the ring, rounded up (docs/results.md, "Compile cost")."""


class Teacher(nn.Module):
    """Holds φ and the estimator's Adam state (m, v, t) as buffers so Lightning checkpoints them.

    ``update`` is the estimator's real training (PAPER.md §2.1 point 1): ``estimator_steps × K``
    steps at ``estimator_lr`` on detached generated samples, written back. ``loss`` is the
    generator's teaching loss: a fresh differentiable K-step unroll at ``unroll_lr`` from the
    just-updated (φ, m, v, t), never written back, evaluated on real data.

    Both go through ``self.backend``, an :class:`~lbt_lightning.unroll.backends.UnrollBackend`
    chosen by ``unroll_backend``: ``"eager"`` (autograd), ``"compiled"``
    (:class:`~lbt_lightning.unroll.compiled.CompiledUnroll`: torch.func + torch.compile, the same
    numbers to float32 rounding, the first iteration compiles), or ``"auto"``: eager until
    :meth:`plan` is told how many teaching iterations a fit has left, compiled from then on
    when they are at least :data:`AUTO_COMPILE_MIN_ITERATIONS`; an estimator (or a platform)
    that torch.compile cannot handle falls back to eager with one warning.
    """

    def __init__(
        self,
        estimator: DensityEstimator,
        *,
        unroll_steps: int,
        unroll_lr: float,
        estimator_lr: float,
        estimator_steps: int,
        inner_optimizer: Literal["adam", "sgd"],
        first_order: bool,
        unroll_backend: Literal["eager", "compiled", "auto"] = "eager",
    ):
        super().__init__()
        if not isinstance(estimator, DensityEstimator):
            raise ValueError(f"estimator must be a DensityEstimator, got {type(estimator).__name__}")
        for name, value in (("unroll_steps", unroll_steps), ("estimator_steps", estimator_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (("unroll_lr", unroll_lr), ("estimator_lr", estimator_lr)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got {inner_optimizer!r}")
        if unroll_backend not in UNROLL_BACKENDS:
            raise ValueError(f"unroll_backend must be one of {UNROLL_BACKENDS}, got {unroll_backend!r}")
        self.estimator = estimator
        self.unroll_steps, self.unroll_lr = unroll_steps, unroll_lr
        self.estimator_steps, self.estimator_lr = estimator_steps, estimator_lr
        self.inner_optimizer, self.first_order = inner_optimizer, first_order
        self.unroll_backend = unroll_backend
        self.backend = self._make("eager" if unroll_backend == "auto" else unroll_backend)
        self._compiled: set[str] = set()  # what "auto" has compiled successfully
        self.names = [k for k, _ in estimator.named_parameters()]
        for i, (_, p) in enumerate(estimator.named_parameters()):
            self.register_buffer(f"m{i}", torch.zeros_like(p))
            self.register_buffer(f"v{i}", torch.zeros_like(p))
        # float64 so that β^t and the bias correction are exact for millions of steps
        self.register_buffer("t", torch.zeros((), dtype=torch.float64))

    def _make(self, name: str) -> UnrollBackend:
        return BACKENDS[name](self.estimator, inner_optimizer=self.inner_optimizer, first_order=self.first_order)

    @property
    def backend_name(self) -> str:
        """The backend in use: ``"eager"`` or ``"compiled"``."""
        return "compiled" if isinstance(self.backend, CompiledUnroll) else "eager"

    def plan(self, teaching_iterations: float) -> None:
        """With ``unroll_backend="auto"``: compile when ``teaching_iterations`` (what the fit has
        left) reach :data:`AUTO_COMPILE_MIN_ITERATIONS` and torch.compile runs on this platform."""
        if self.unroll_backend != "auto":
            return
        name = "eager"
        if teaching_iterations >= AUTO_COMPILE_MIN_ITERATIONS and torch._dynamo.is_dynamo_supported():
            name = "compiled"
        if name != self.backend_name:
            self.backend, self._compiled = self._make(name), set()
        rank_zero_info(
            f"unroll_backend='auto': {name} ({teaching_iterations:g} teaching iterations left; "
            f"compiled from {AUTO_COMPILE_MIN_ITERATIONS})"
        )

    def _run(self, method: str, *args):
        """``self.backend.<method>(*args)``. Under ``"auto"``, a compilation failure switches to
        eager for good and reruns the call from the same random state, as if eager all along."""
        trial = self.unroll_backend == "auto" and self.backend_name == "compiled" and method not in self._compiled
        if not trial:
            return getattr(self.backend, method)(*args)
        cuda = [self.t.device] if self.t.device.type == "cuda" else []
        rng = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda]
        try:
            out = getattr(self.backend, method)(*args)
        except CompileError as error:
            rank_zero_warn(f"unroll_backend='auto': {error.reason}; continuing with the eager unroll")
            self.backend = self._make("eager")
            torch.set_rng_state(rng[0])
            for d, state in zip(cuda, rng[1], strict=True):
                torch.cuda.set_rng_state(state, d)
            return getattr(self.backend, method)(*args)
        self._compiled.add(method)
        return out

    def state(self) -> InnerState:
        m = {k: getattr(self, f"m{i}") for i, k in enumerate(self.names)}
        v = {k: getattr(self, f"v{i}") for i, k in enumerate(self.names)}
        return InnerState(m, v, self.t)

    @torch.no_grad()
    def _assign(self, params: objectives.Params, state: InnerState) -> None:
        for i, (k, p) in enumerate(self.estimator.named_parameters()):
            p.copy_(params[k])
            getattr(self, f"m{i}").copy_(state.m[k])
            getattr(self, f"v{i}").copy_(state.v[k])
        self.t.copy_(state.t)

    def update(
        self,
        sample_fake: Callable[[], Tensor],
        reduce_grads=None,
        all_finite: Callable[[list[Tensor]], bool] | None = None,
    ) -> tuple[Tensor, bool]:
        """Train the estimator on generated samples.

        Returns:
            e_loss, ``-mean log p_φ(fake)`` of the last fake batch (for the VAE its ELBO stands
            in for log p), and whether the update was applied: a non-finite log-prob, gradient
            or result leaves φ and (m, v, t) unchanged. ``all_finite`` decides that (under DDP
            over all ranks, ``GenerativeModule.all_finite``); None: on this process alone.
        """
        steps = self.estimator_steps * self.unroll_steps
        params = objectives.detached_params(self.estimator)
        with full_precision(self.t.device):  # float32 under bf16-mixed (lbt_lightning.lightning.precision)
            result = self._run("update", params, self.state(), sample_fake, steps, self.estimator_lr, reduce_grads)
        tensors = [result.value, *result.params.values(), *result.state.m.values()]
        norm = torch.nn.utils.get_total_norm(tensors)
        finite = all_finite([norm]) if all_finite is not None else bool(torch.isfinite(norm))
        if finite:
            self._assign(result.params, result.state)
        return -result.value, finite

    def loss(
        self, sample_fake: Callable[[], Tensor], real: Tensor, criterion: Criterion = objectives.negative_mean
    ) -> Tensor:
        """Teaching loss ``criterion(log p_{φ^K}(real))`` (by default ``-mean log p_{φ^K}(real)``),
        differentiable w.r.t. the generator through ``sample_fake``."""
        params, state = objectives.detached_params(self.estimator), self.state()
        with full_precision(self.t.device):  # the generator's samples too: the unroll differentiates them
            return self._run("loss", params, state, sample_fake, real, self.unroll_steps, self.unroll_lr, criterion)


class Teaching:
    """Mixin of the methods that teach an estimator held in ``self.teacher`` (LBT, LBT-GAN): the
    ``estimator`` and the ``teaching_loss`` hook that their ``training_step`` calls."""

    teacher: Teacher

    @property
    def estimator(self) -> DensityEstimator:
        return self.teacher.estimator

    def teaching_iterations_left(self) -> float:
        """Iterations that teach in the rest of this fit (every one, here)."""
        return self.iterations_left()

    def on_train_start(self) -> None:
        super().on_train_start()
        self.teacher.plan(self.teaching_iterations_left())

    def teaching_loss(self, real: Tensor, criterion: Criterion = objectives.negative_mean) -> Tensor:
        """The generator's teaching loss: ``criterion(log p_{φ^K}(real))`` through a fresh K-step
        unroll on new fake samples, by default ``-mean log p_{φ^K}(real)``. Override it, or call
        it with another ``criterion``, for another teaching loss (docs/extending.md).

        Arguments:
            real: The real batch.
            criterion: Maps ``log p_{φ^K}(real)``, shape (B,), to the loss; it runs inside the
                compiled graph with ``unroll_backend="compiled"``.
        """
        return self.teacher.loss(self.fakes(real.shape[0]), real, criterion)
