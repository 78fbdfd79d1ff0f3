"""The estimator and its one persistent optimizer state, shared by the real update and the unroll."""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from lbt_lightning import objectives
from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.fast_unroll import UNROLL_BACKENDS, FastUnroll, UnrollBackend
from lbt_lightning.objectives import INNER_OPTIMIZERS, InnerState


class Teacher(nn.Module):
    """Holds φ and the estimator's Adam state (m, v, t) as buffers so Lightning checkpoints them.

    ``update`` is the estimator's real training (PAPER.md §2.1 point 1): ``estimator_steps × K``
    steps at ``estimator_lr`` on detached generated samples, written back. ``loss`` is the
    generator's teaching loss: a fresh differentiable K-step unroll at ``unroll_lr`` from the
    just-updated (φ, m, v, t), never written back, evaluated on real data.

    ``unroll_backend="compiled"`` runs both through :class:`~lbt_lightning.fast_unroll.FastUnroll`
    (torch.func + torch.compile; the same numbers to float32 rounding, the first iteration
    compiles); the fake batches of a pass are then drawn before the estimator's own noise.
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
        unroll_backend: UnrollBackend = "eager",
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
        if unroll_backend == "compiled":
            self.fast = FastUnroll(estimator, inner_optimizer=inner_optimizer, first_order=first_order)
        self.names = [k for k, _ in estimator.named_parameters()]
        for i, (_, p) in enumerate(estimator.named_parameters()):
            self.register_buffer(f"m{i}", torch.zeros_like(p))
            self.register_buffer(f"v{i}", torch.zeros_like(p))
        # float64 so that β^t and the bias correction are exact for millions of steps
        self.register_buffer("t", torch.zeros((), dtype=torch.float64))

    def state(self) -> InnerState:
        m = {k: getattr(self, f"m{i}") for i, k in enumerate(self.names)}
        v = {k: getattr(self, f"v{i}") for i, k in enumerate(self.names)}
        return InnerState(m, v, self.t)

    def _unroll(self, sample_fake: Callable[[], Tensor], steps: int, lr: float, **kwargs):
        return objectives.unroll(
            objectives.log_likelihood(self.estimator, sample_fake),
            objectives.detached_params(self.estimator),
            self.state(),
            steps=steps,
            lr=lr,
            inner_optimizer=self.inner_optimizer,
            **kwargs,
        )

    @torch.no_grad()
    def _assign(self, params: objectives.Params, state: InnerState) -> None:
        for i, (k, p) in enumerate(self.estimator.named_parameters()):
            p.copy_(params[k])
            getattr(self, f"m{i}").copy_(state.m[k])
            getattr(self, f"v{i}").copy_(state.v[k])
        self.t.copy_(state.t)

    def update(self, sample_fake: Callable[[], Tensor], reduce_grads=None) -> tuple[Tensor, bool]:
        """Train the estimator on generated samples.

        Returns:
            e_loss (-ELBO of the last fake batch) and whether the update was applied: a
            non-finite log-prob, gradient or result leaves φ and (m, v, t) unchanged.
        """
        steps = self.estimator_steps * self.unroll_steps
        if self.unroll_backend == "compiled":
            fakes = [sample_fake().detach() for _ in range(steps)]
            params = objectives.detached_params(self.estimator)
            result = self.fast.update(params, self.state(), fakes, self.estimator_lr, reduce_grads)
        else:
            with torch.enable_grad():
                sample = lambda: sample_fake().detach()  # noqa: E731
                result = self._unroll(sample, steps, self.estimator_lr, create_graph=False, reduce_grads=reduce_grads)
        tensors = [result.value, *result.params.values(), *result.state.m.values()]
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors)))
        if finite:
            self._assign(result.params, result.state)
        return -result.value, finite

    def loss(self, sample_fake: Callable[[], Tensor], real: Tensor) -> Tensor:
        """Teaching loss -mean log p_{φ^K}(real), differentiable w.r.t. the generator."""
        if self.unroll_backend == "compiled":
            fakes = [sample_fake() for _ in range(self.unroll_steps)]
            params = objectives.detached_params(self.estimator)
            return self.fast.teaching_loss(params, self.state(), fakes, real, self.unroll_lr)
        result = self._unroll(sample_fake, self.unroll_steps, self.unroll_lr, first_order=self.first_order)
        return objectives.teaching_loss(self.estimator, result.params, real)
