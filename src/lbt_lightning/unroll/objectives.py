"""Pure functions: GAN losses, the differentiable unrolled inner optimizer, the teaching loss.

The unroll follows the authors' code (PAPER.md §2.1): K gradient-*ascent* steps on
``mean log_prob(G(z))`` with fresh z per step, using a Keras-style Adam (ε inside the square
root, bias correction from a persistent step counter t, the second moment v detached, the first
moment m and the gradient kept in the graph), or plain SGD.
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

InnerOptimizer = Literal["adam", "sgd"]
INNER_OPTIMIZERS = ("adam", "sgd")
Params = dict[str, Tensor]


class InnerState(NamedTuple):
    """Adam state of the estimator: first and second moments per parameter, step counter."""

    m: Params
    v: Params
    t: Tensor


class Unrolled(NamedTuple):
    """Result of :func:`unroll`: φ^K, the optimizer state after K steps, and the objective at
    the last step (detached, for logging)."""

    params: Params
    state: InnerState
    value: Tensor


class AdamConfig(NamedTuple):
    """The unrolled Adam's constants (PAPER.md §2.1 point 3: β1 0.5, β2 0.999, ε 1e-8)."""

    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8


def d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Discriminator BCE: real labelled 1, fake labelled 0."""
    ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_fake)
    real = F.binary_cross_entropy_with_logits(d_real, ones)
    return real + F.binary_cross_entropy_with_logits(d_fake, zeros)


def g_loss(d_fake: Tensor) -> Tensor:
    """Non-saturating generator loss, -log σ(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def detached_params(module: nn.Module) -> Params:
    """Leaf copies of the parameters: the unroll's φ⁰, constant with respect to the generator."""
    return {k: p.detach().requires_grad_() for k, p in module.named_parameters()}


def adam_step(
    params: Params, grads: Sequence[Tensor], state: InnerState, lr: float, cfg: AdamConfig
) -> tuple[Params, InnerState]:
    """One Adam *ascent* step; differentiable through m and the gradients, v detached."""
    t = state.t + 1
    lr_t = lr * torch.sqrt(1 - cfg.beta2**t) / (1 - cfg.beta1**t)
    new_params, m, v = {}, {}, {}
    for (k, p), g in zip(params.items(), grads):
        m[k] = cfg.beta1 * state.m[k] + (1 - cfg.beta1) * g
        v[k] = (cfg.beta2 * state.v[k] + (1 - cfg.beta2) * g.square()).detach()
        new_params[k] = p + lr_t * m[k] / torch.sqrt(v[k] + cfg.eps)
    return new_params, InnerState(m, v, t)


def sgd_step(params: Params, grads: Sequence[Tensor], state: InnerState, lr: float) -> tuple[Params, InnerState]:
    """One SGD ascent step; the Adam moments are carried through untouched."""
    new_params = {k: p + lr * g for (k, p), g in zip(params.items(), grads)}
    return new_params, InnerState(state.m, state.v, state.t)


def inner_step(
    params: Params,
    grads: Sequence[Tensor],
    state: InnerState,
    lr: float,
    inner_optimizer: InnerOptimizer,
    adam: AdamConfig = AdamConfig(),
) -> tuple[Params, InnerState]:
    """One ascent step of ``inner_optimizer``: :func:`adam_step` or :func:`sgd_step`."""
    if inner_optimizer == "adam":
        return adam_step(params, grads, state, lr, adam)
    return sgd_step(params, grads, state, lr)


FLAT = "flat"
"""The one name under which :func:`unroll` hands the concatenated parameters to ``inner_step``."""


class ParamLayout:
    """Where each tensor of a parameter dict lies in one flat vector (all of one dtype and device).

    Example:
        >>> layout = ParamLayout({"w": torch.ones(2, 2), "b": torch.zeros(3)})
        >>> flat = layout.flatten({"w": torch.ones(2, 2), "b": torch.zeros(3)})
        >>> flat.shape, layout.unflatten(flat)["w"].shape
        (torch.Size([7]), torch.Size([2, 2]))
    """

    def __init__(self, params: Params):
        if not params:
            raise ValueError("the estimator has no parameters to train")
        kinds = {(p.dtype, p.device) for p in params.values()}
        if len(kinds) > 1:
            kinds = sorted(map(str, kinds))
            raise ValueError(f"the estimator's parameters must share one dtype and device, got {kinds}")
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]

    def flatten(self, tensors: Params) -> Tensor:
        return torch.cat([tensors[k].reshape(-1) for k in self.names])

    def unflatten(self, flat: Tensor) -> Params:
        chunks = flat.split(self.sizes)
        return {k: c.view(shape) for k, c, shape in zip(self.names, chunks, self.shapes, strict=True)}


def log_likelihood(estimator: nn.Module, sample_fake: Callable[[], Tensor]) -> Callable[[Params], Tensor]:
    """The estimator's inner objective: ``mean log p_φ(sample_fake())``, fresh samples per call."""
    return lambda params: functional_call(estimator, params, (sample_fake(),)).mean()


def unroll(
    objective: Callable[[Params], Tensor],
    params: Params,
    state: InnerState,
    *,
    steps: int,
    lr: float,
    inner_optimizer: InnerOptimizer = "adam",
    first_order: bool = False,
    create_graph: bool = True,
    adam: AdamConfig = AdamConfig(),
    reduce_grads: Callable[[list[Tensor]], list[Tensor]] | None = None,
) -> Unrolled:
    """K ascent steps of an optimizer on ``objective(params)``.

    Arguments:
        objective: Scalar to maximise at the given parameters, e.g. :func:`log_likelihood`;
            called once per step, so it should draw fresh samples each call.
        params: φ⁰, e.g. :func:`detached_params`.
        state: Optimizer state (m, v, t) that the first step continues from.
        steps: K.
        lr: Learning rate.
        inner_optimizer: ``"adam"`` (the paper's) or ``"sgd"``.
        first_order: Take each inner gradient at detached parameters. The result still depends
            on the outer variables through the samples (e.g. ∂²log p/∂φ∂x), but the Hessian
            terms ∂g_k/∂φ^k along the trajectory are dropped.
        create_graph: Keep the graph so the result can be differentiated; ``False`` gives a
            real (non-differentiable) update.
        reduce_grads: Applied to every inner gradient, e.g. an all-reduce across processes.

    Returns:
        :class:`Unrolled` with φ^K, the state after K steps and the last objective value.

    The steps run on the parameters concatenated into one vector (:class:`ParamLayout`), so
    ``inner_step`` and ``reduce_grads`` see a single tensor under the name :data:`FLAT`;
    the results are per-parameter again.
    """
    if inner_optimizer not in INNER_OPTIMIZERS:
        raise ValueError(f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got {inner_optimizer!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    # The optimizer works on one flat vector (a dozen elementwise ops per step instead of a
    # dozen per parameter, forward and backward); the objective sees views of it.
    layout = ParamLayout(params)
    phi = layout.flatten(params)
    if not create_graph:
        phi = phi.detach().requires_grad_()
    state = InnerState({FLAT: layout.flatten(state.m)}, {FLAT: layout.flatten(state.v)}, state.t)
    for _ in range(steps):
        at = phi.detach().requires_grad_() if first_order else phi
        value = objective(layout.unflatten(at))
        grads = list(torch.autograd.grad(value, [at], create_graph=create_graph))
        if reduce_grads is not None:
            grads = reduce_grads(grads)
        if not create_graph:
            phi = phi.detach().requires_grad_()
        new, state = inner_step({FLAT: phi}, grads, state, lr, inner_optimizer, adam)
        phi = new[FLAT]
    m, v = layout.unflatten(state.m[FLAT]), layout.unflatten(state.v[FLAT])
    return Unrolled(layout.unflatten(phi), InnerState(m, v, state.t), value.detach())


Criterion = Callable[[Tensor], Tensor]
"""Maps the per-sample ``log p_{φ^K}(x_real)``, shape (B,), to the generator's scalar loss."""


def negative_mean(log_p: Tensor) -> Tensor:
    """The paper's criterion: ``-mean log p_{φ^K}(x_real)`` (forward KL up to a constant)."""
    return -log_p.mean()


def teaching_loss(estimator: nn.Module, params: Params, real: Tensor, criterion: Criterion = negative_mean) -> Tensor:
    """The generator's LBT loss, ``criterion(log p_{φ^K}(x_real))``; by default the paper's
    :func:`negative_mean`."""
    return criterion(functional_call(estimator, params, (real,)))
