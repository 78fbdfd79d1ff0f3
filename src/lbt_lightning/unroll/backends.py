"""How LBT's unroll is computed: one interface, an eager (autograd) and a compiled implementation.

:class:`~lbt_lightning.unroll.teacher.Teacher` builds one backend at construction
(``unroll_backend``) and calls only :meth:`UnrollBackend.update` and :meth:`UnrollBackend.loss`.

Both draw the ``steps`` fake batches of a pass first, before the estimator's own noise (the
VAE's ε), through :func:`draw`: one generator call for all of them when ``sample_fake`` offers
``batches(k)`` (:class:`FakeBatches`), else one call of ``sample_fake`` per batch.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lbt_lightning.unroll import objectives
from lbt_lightning.unroll.objectives import INNER_OPTIMIZERS, AdamConfig, Criterion, InnerState, Params, Unrolled

ReduceGrads = Callable[[list[Tensor]], list[Tensor]]


class FakeBatches:
    """Fresh generated batches of ``n`` samples: one per call, or ``batches(k)``, k of them.

    ``batches(k)`` runs the generator once on k·n noise vectors and splits the result when
    ``batched`` (a generator without batch statistics gives every sample the same output either
    way, and one large call costs less than k small ones), else calls it k times.

    Arguments:
        generator: x = G(z).
        noise: ``noise(m)``: m noise vectors.
        n: The batch size.
        grad: Keep the graph to the generator (the teaching loss) or not (the estimator's update).
        batched: One generator call for k batches.
    """

    def __init__(self, generator: nn.Module, noise: Callable[[int], Tensor], n: int, *, grad: bool, batched: bool):
        self.generator, self.noise, self.n, self.grad, self.batched = generator, noise, n, grad, batched

    def __call__(self) -> Tensor:
        return self.batches(1)[0]

    def batches(self, k: int) -> list[Tensor]:
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            if self.batched:
                return list(self.generator(self.noise(k * self.n)).split(self.n))
            return [self.generator(self.noise(self.n)) for _ in range(k)]


def draw(sample_fake: Callable[[], Tensor], k: int) -> list[Tensor]:
    """k fresh batches: ``sample_fake.batches(k)`` where it exists, else k calls of ``sample_fake``."""
    batches = getattr(sample_fake, "batches", None)
    return batches(k) if batches is not None else [sample_fake() for _ in range(k)]


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
        self.layout = objectives.ParamLayout(dict(estimator.named_parameters()))

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
        batch each, every gradient passed through ``reduce_grads`` (as one flat tensor); no
        graph is kept."""

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
    """:func:`objectives.unroll` with autograd."""

    def update(self, params, state, sample_fake, steps, lr, reduce_grads=None) -> Unrolled:
        with torch.no_grad():
            fakes = iter(draw(sample_fake, steps))
        with torch.enable_grad():  # the inner gradients need a graph even when the caller has none
            return objectives.unroll(
                objectives.log_likelihood(self.estimator, lambda: next(fakes)),
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
        fakes = iter(draw(sample_fake, steps))
        result = objectives.unroll(
            objectives.log_likelihood(self.estimator, lambda: next(fakes)),
            params,
            state,
            steps=steps,
            lr=lr,
            inner_optimizer=self.inner_optimizer,
            first_order=self.first_order,
            adam=self.adam,
        )
        return objectives.teaching_loss(self.estimator, result.params, real, criterion)
