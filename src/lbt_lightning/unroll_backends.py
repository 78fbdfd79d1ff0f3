"""How LBT's unroll is computed: one interface, an eager (autograd) and a compiled implementation.

:class:`~lbt_lightning.methods.teacher.Teacher` builds one backend at construction
(``unroll_backend``) and calls only :meth:`UnrollBackend.update` and :meth:`UnrollBackend.loss`.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lbt_lightning import objectives
from lbt_lightning.objectives import INNER_OPTIMIZERS, AdamConfig, Criterion, InnerState, Params, Unrolled

ReduceGrads = Callable[[list[Tensor]], list[Tensor]]


class UnrollBackend(ABC):
    """K ascent steps of the estimator's inner optimizer on ``mean log p_φ(fake)``.

    Arguments:
        estimator: The density p_φ; its ``forward`` is ``log_prob``.
        inner_optimizer: ``"adam"`` or ``"sgd"``, as in :func:`objectives.unroll`.
        first_order: As in :func:`objectives.unroll` (applies to :meth:`loss`).
        adam: The unrolled Adam's constants.
    """

    def __init__(
        self,
        estimator: nn.Module,
        *,
        inner_optimizer: objectives.InnerOptimizer = "adam",
        first_order: bool = False,
        adam: AdamConfig = AdamConfig(),
    ):
        if inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got {inner_optimizer!r}")
        self.estimator, self.inner_optimizer = estimator, inner_optimizer
        self.first_order, self.adam = first_order, adam

    @abstractmethod
    def update(
        self,
        params: Params,
        state: InnerState,
        sample_fake: Callable[[], Tensor],
        steps: int,
        lr: float,
        reduce_grads: ReduceGrads | None = None,
    ) -> Unrolled:
        """The estimator's real training: ``steps`` steps from (params, state), one fresh detached
        batch each, every gradient passed through ``reduce_grads``; no graph is kept."""

    @abstractmethod
    def loss(
        self,
        params: Params,
        state: InnerState,
        sample_fake: Callable[[], Tensor],
        real: Tensor,
        steps: int,
        lr: float,
        criterion: Criterion = objectives.negative_mean,
    ) -> Tensor:
        """``criterion(log p_{φ^K}(real))`` after K = ``steps`` differentiable steps on fresh
        batches of ``sample_fake``, differentiable with respect to those batches (the generator)."""


class EagerUnroll(UnrollBackend):
    """:func:`objectives.unroll` with autograd, drawing each fake batch when its step needs it."""

    def update(self, params, state, sample_fake, steps, lr, reduce_grads=None) -> Unrolled:
        with torch.enable_grad():  # the inner gradients need a graph even when the caller has none
            return objectives.unroll(
                objectives.log_likelihood(self.estimator, lambda: sample_fake().detach()),
                params,
                state,
                steps=steps,
                lr=lr,
                inner_optimizer=self.inner_optimizer,
                create_graph=False,
                adam=self.adam,
                reduce_grads=reduce_grads,
            )

    def loss(self, params, state, sample_fake, real, steps, lr, criterion=objectives.negative_mean) -> Tensor:
        result = objectives.unroll(
            objectives.log_likelihood(self.estimator, sample_fake),
            params,
            state,
            steps=steps,
            lr=lr,
            inner_optimizer=self.inner_optimizer,
            first_order=self.first_order,
            adam=self.adam,
        )
        return objectives.teaching_loss(self.estimator, result.params, real, criterion)
