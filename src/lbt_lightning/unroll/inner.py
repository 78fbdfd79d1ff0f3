"""The inner problem, top to bottom: the density estimator (the paper's *student*), the authors'
optimizer for it, and the K-step unroll of that optimizer that the generator (the *teacher*)
differentiates through (PAPER.md §2.1).

1. :func:`adam_step` / :func:`sgd_step`: one gradient-*ascent* step on ``mean log p_φ(x)``. The
   authors' Adam: ε inside the square root, bias correction from a persistent step counter t,
   the second moment v detached, the first moment m and the gradient kept in the graph.
2. :func:`unroll`: K such steps, one fresh generated batch each.
3. :class:`Student`: the estimator with φ, m and v each held as one flat vector (the estimator's
   parameters are views of φ), so a step is a dozen elementwise ops on three vectors and nothing
   is concatenated or split per call. :meth:`Student.update` is the estimator's real training
   (one step per generated batch it is given, written back); :meth:`Student.teaching_loss` is
   the generator's loss ``-mean log p_{φ^K}(x_real)`` after a fresh differentiable K-step unroll
   from the current (φ, m, v, t), never written back.

Both run :func:`unroll` with autograd here, or, with ``unroll_backend="compiled"``, the same
:func:`unroll` and :func:`inner_step` under torch.func and torch.compile
(:mod:`lbt_lightning.unroll.compiled`).
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.func import functional_call

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.lightning.precision import full_precision

InnerOptimizer = Literal["adam", "sgd"]
INNER_OPTIMIZERS = ("adam", "sgd")
UNROLL_BACKENDS = ("eager", "compiled")


class AdamConfig(NamedTuple):
    """The unrolled Adam's constants (PAPER.md §2.1 point 3: β1 0.5, β2 0.999, ε 1e-8)."""

    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8


class InnerState(NamedTuple):
    """The estimator optimizer's state: Adam's moments m and v (flat, like φ) and the step counter t."""

    m: Tensor
    v: Tensor
    t: Tensor


def adam_step(phi: Tensor, grad: Tensor, state: InnerState, lr: float, adam: AdamConfig) -> tuple[Tensor, InnerState]:
    """One Adam *ascent* step; differentiable through m and the gradient, v detached."""
    t = state.t + 1
    lr_t = lr * torch.sqrt(1 - adam.beta2**t) / (1 - adam.beta1**t)
    m = adam.beta1 * state.m + (1 - adam.beta1) * grad
    v = (adam.beta2 * state.v + (1 - adam.beta2) * grad.square()).detach()
    return phi + lr_t * m / torch.sqrt(v + adam.eps), InnerState(m, v, t)


def sgd_step(phi: Tensor, grad: Tensor, state: InnerState, lr: float) -> tuple[Tensor, InnerState]:
    """One SGD ascent step; the Adam state is carried through untouched."""
    return phi + lr * grad, state


def inner_step(
    phi: Tensor, grad: Tensor, state: InnerState, lr: float, inner_optimizer: InnerOptimizer, adam: AdamConfig
) -> tuple[Tensor, InnerState]:
    """One ascent step of ``inner_optimizer``: :func:`adam_step` or :func:`sgd_step`."""
    if inner_optimizer == "adam":
        return adam_step(phi, grad, state, lr, adam)
    if inner_optimizer == "sgd":
        return sgd_step(phi, grad, state, lr)
    raise ValueError(f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got {inner_optimizer!r}")


Gradient = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``gradient(φ, x)`` → (∂/∂φ mean log p_φ(x), mean log p_φ(x))."""


def unroll(
    gradient: Gradient,
    phi: Tensor,
    state: InnerState,
    fakes: Sequence[Tensor],
    *,
    lr: float,
    inner_optimizer: InnerOptimizer = "adam",
    first_order: bool = False,
    adam: AdamConfig = AdamConfig(),
    reduce_grad: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, InnerState, Tensor]:
    """One ascent step of the inner optimizer per batch of ``fakes``, from (φ, state).

    Arguments:
        gradient: The inner objective's gradient and value (:func:`autograd_gradient`, or
            ``torch.func.grad_and_value`` in the compiled path).
        phi: φ⁰ as one flat vector.
        state: The optimizer state the first step continues from.
        fakes: K generated batches; differentiable with respect to the generator for the
            teaching loss.
        lr: Learning rate.
        inner_optimizer: ``"adam"`` (the paper's) or ``"sgd"``.
        first_order: Take each gradient at a detached φ: the result still depends on the
            generator through the samples (∂²log p/∂φ∂x), but the Hessian terms ∂g_k/∂φ^k
            along the trajectory are dropped.
        reduce_grad: Applied to every gradient, e.g. an all-reduce across processes.

    Returns:
        φ^K, the state after K steps, and the objective at the last step.
    """
    for x in fakes:
        grad, value = gradient(phi.detach() if first_order else phi, x)
        if reduce_grad is not None:
            grad = reduce_grad(grad)
        phi, state = inner_step(phi, grad, state, lr, inner_optimizer, adam)
    return phi, state, value


def autograd_gradient(log_prob: Callable[[Tensor, Tensor], Tensor], *, create_graph: bool) -> Gradient:
    """:data:`Gradient` of ``log_prob(φ, x).mean()`` with ``torch.autograd.grad``: differentiable
    (``create_graph``, for the teaching loss) or not (the real update)."""

    def gradient(phi: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():  # the inner gradient needs a graph even when the caller has none
            if not phi.requires_grad:
                phi = phi.detach().requires_grad_()
            value = log_prob(phi, x).mean()
            (grad,) = torch.autograd.grad(value, phi, create_graph=create_graph)
        return grad, value

    return gradient


Criterion = Callable[[Tensor], Tensor]
"""Maps the per-sample ``log p_{φ^K}(x_real)``, shape (B,), to the generator's scalar loss."""


def negative_mean(log_p: Tensor) -> Tensor:
    """The paper's criterion: ``-mean log p_{φ^K}(x_real)`` (forward KL up to a constant)."""
    return -log_p.mean()


class ParamLayout:
    """Where each tensor of a parameter dict lies in one flat vector (all of one dtype and device).

    Example:
        >>> layout = ParamLayout({"w": torch.ones(2, 2), "b": torch.zeros(3)})
        >>> flat = layout.flatten({"w": torch.ones(2, 2), "b": torch.zeros(3)})
        >>> flat.shape, layout.unflatten(flat)["w"].shape
        (torch.Size([7]), torch.Size([2, 2]))
    """

    def __init__(self, params: dict[str, Tensor]):
        if not params:
            raise ValueError("the estimator has no parameters to train")
        kinds = {(p.dtype, p.device) for p in params.values()}
        if len(kinds) > 1:
            kinds = sorted(map(str, kinds))
            raise ValueError(f"the estimator's parameters must share one dtype and device, got {kinds}")
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        return torch.cat([tensors[k].reshape(-1) for k in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of ``flat``, one per parameter."""
        chunks = flat.split(self.sizes)
        return {k: c.view(shape) for k, c, shape in zip(self.names, chunks, self.shapes, strict=True)}


class Student(nn.Module):
    """The estimator p_φ with its optimizer state (m, v, t), all checkpointed with the model.

    φ is one flat vector and the estimator's parameters are views of it (:meth:`phi`); m and v
    are flat buffers of the same length, t a float64 scalar (β^t and the bias correction stay
    exact for millions of steps). Each parameter shares φ's storage, so ``torch.save`` of the
    state dict stores φ once, while pickling or saving one parameter on its own writes all of φ.

    Arguments:
        estimator: The density p_φ; its ``forward`` is ``log_prob``.
        unroll_steps: K.
        unroll_lr: Learning rate of the differentiable unroll.
        estimator_lr: Learning rate of the real update.
        estimator_steps: Blocks of K steps per real update (n_est).
        inner_optimizer: ``"adam"`` or ``"sgd"``.
        first_order: As in :func:`unroll` (applies to the teaching loss).
        unroll_backend: ``"eager"`` (autograd) or ``"compiled"``
            (:class:`~lbt_lightning.unroll.compiled.CompiledUnroll`); ``"auto"``, an earlier
            release's default, runs eager with a warning.
    """

    def __init__(
        self,
        estimator: DensityEstimator,
        *,
        unroll_steps: int,
        unroll_lr: float,
        estimator_lr: float,
        estimator_steps: int,
        inner_optimizer: InnerOptimizer,
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
        if unroll_backend == "auto":  # an older release's default: its checkpoints keep loading
            rank_zero_warn(
                "unroll_backend='auto' (compiled for long fits) was removed; this model runs 'eager'. "
                "Set model.init_args.unroll_backend to 'eager' or 'compiled'"
            )
            unroll_backend = "eager"
        if unroll_backend not in UNROLL_BACKENDS:
            raise ValueError(f"unroll_backend must be one of {UNROLL_BACKENDS}, got {unroll_backend!r}")
        self.estimator = estimator
        self.unroll_steps, self.unroll_lr = unroll_steps, unroll_lr
        self.estimator_steps, self.estimator_lr = estimator_steps, estimator_lr
        self.inner_optimizer, self.first_order = inner_optimizer, first_order
        self.adam = AdamConfig()
        self.layout = ParamLayout(dict(estimator.named_parameters()))
        p = next(estimator.parameters())
        self.register_buffer("m", torch.zeros(self.layout.numel, dtype=p.dtype, device=p.device))
        self.register_buffer("v", torch.zeros(self.layout.numel, dtype=p.dtype, device=p.device))
        self.register_buffer("t", torch.zeros((), dtype=torch.float64))
        self._phi: Tensor | None = None
        self.compiled = None
        if unroll_backend == "compiled":
            from lbt_lightning.unroll.compiled import CompiledUnroll  # imports torch._dynamo: only when asked for

            self.compiled = CompiledUnroll(self)

    @property
    def unroll_backend(self) -> str:
        return "eager" if self.compiled is None else "compiled"

    @torch.no_grad()
    def phi(self) -> Tensor:
        """φ as one flat vector whose slices are the estimator's parameters. Anything that gave the
        parameters new storage (``.to()``, ``copy.deepcopy``, ``load_state_dict(assign=True)``) is
        noticed here and φ is rebuilt from the parameters, which stay the reference."""
        params = dict(self.estimator.named_parameters())
        if list(params) != self.layout.names or [p.shape for p in params.values()] != self.layout.shapes:
            raise RuntimeError(
                f"the estimator's parameters changed after the Student was built: {list(params)} "
                f"instead of {self.layout.names} (with their shapes); build the method again"
            )
        phi = self._phi
        if phi is None or not self._holds(phi, list(params.values())):
            phi = self.layout.flatten(params)
            for p, view in zip(params.values(), self.layout.unflatten(phi).values(), strict=True):
                p.data = view
            self._phi = phi
        return phi

    def _holds(self, phi: Tensor, params: list[Tensor]) -> bool:
        """Whether every parameter is its slice of ``phi``."""
        if any(p.device != phi.device or p.dtype != phi.dtype for p in params):
            return False
        address, offset = phi.data_ptr(), 0
        for p, size in zip(params, self.layout.sizes, strict=True):
            if size and p.data_ptr() != address + offset * phi.element_size():  # an empty one has no address
                return False
            offset += size
        return True

    def state(self) -> InnerState:
        return InnerState(self.m, self.v, self.t)

    def log_prob(self, phi: Tensor, x: Tensor) -> Tensor:
        """``log p_φ(x)`` per sample at the flat parameters ``phi``."""
        return functional_call(self.estimator, self.layout.unflatten(phi), (x,))

    def update(
        self,
        fakes: Sequence[Tensor],
        reduce_grad: Callable[[Tensor], Tensor] | None = None,
        all_finite: Callable[[list[Tensor]], bool] | None = None,
    ) -> tuple[Tensor, bool]:
        """Train the estimator on generated samples (PAPER.md §2.1 point 1): one step per batch of
        ``fakes`` (``estimator_steps × K`` of them, without a graph) at ``estimator_lr``.

        Returns:
            e_loss, ``-mean log p_φ(fake)`` of the last batch (for the VAE its ELBO stands in for
            log p), and whether the update was applied: a non-finite log-prob, gradient or result
            leaves φ and (m, v, t) unchanged. ``all_finite`` decides that (under DDP over all
            ranks); None: on this process alone.
        """
        phi, state = self.phi(), self.state()
        with torch.no_grad(), full_precision(self.t.device):  # float32 under bf16-mixed
            if self.compiled is not None:
                phi, state, value = self.compiled.update(phi, state, fakes, self.estimator_lr, reduce_grad)
            else:
                gradient = autograd_gradient(self.log_prob, create_graph=False)
                phi, state, value = unroll(
                    gradient, phi, state, fakes, lr=self.estimator_lr, inner_optimizer=self.inner_optimizer,
                    adam=self.adam, reduce_grad=reduce_grad,
                )  # fmt: skip
            norm = torch.nn.utils.get_total_norm([value, phi, state.m])
            finite = all_finite([norm]) if all_finite is not None else bool(torch.isfinite(norm))
            if finite:
                self._phi.copy_(phi)
                # the parameters are views of φ with version counters of their own: a graph that
                # used them before this update must not backpropagate through the new values
                torch.autograd.graph.increment_version(list(self.estimator.parameters()))
                self.m.copy_(state.m)
                self.v.copy_(state.v)
                self.t.copy_(state.t)
        return -value.detach(), finite

    def teaching_loss(self, fakes: Sequence[Tensor], real: Tensor, criterion: Criterion = negative_mean) -> Tensor:
        """``criterion(log p_{φ^K}(real))`` after K differentiable steps at ``unroll_lr`` on ``fakes``
        (K batches, differentiable with respect to the generator) from the current (φ, m, v, t).
        Its graph reads φ itself: an :meth:`update` before its backward is an error."""
        phi, state = self.phi().detach(), self.state()
        with full_precision(self.t.device):  # the generator's samples too: the unroll differentiates them
            if self.compiled is not None:
                return self.compiled.teaching_loss(phi, state, fakes, real, self.unroll_lr, criterion)
            gradient = autograd_gradient(self.log_prob, create_graph=True)
            phi_k, _, _ = unroll(
                gradient, phi, state, fakes, lr=self.unroll_lr, inner_optimizer=self.inner_optimizer,
                first_order=self.first_order, adam=self.adam,
            )  # fmt: skip
            return criterion(self.log_prob(phi_k, real))
