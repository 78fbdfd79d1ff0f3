"""A real ``torch.optim`` optimizer's update rule as a differentiable function of tensors.

The Unrolled GAN (Metz et al. 2017) differentiates through K steps of the discriminator's own
optimizer. :class:`TwinOptimizer` reads that optimizer's hyper-parameters and current state and
repeats its formulas out of place, so that one step taken on gradients without a graph equals
``optimizer.step()`` (a golden test holds it to float32 rounding) and a step on gradients with a
graph is differentiable with respect to whatever produced them.

LBT's own unroll (:mod:`lbt_lightning.unroll.inner`) is deliberately *not* this: it keeps the LBT
authors' Adam (ε inside the square root, second moment detached).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

Params = dict[str, Tensor]
SUPPORTED = "torch.optim.Adam, AdamW or SGD"


def safe_sqrt(v: Tensor) -> Tensor:
    """``v.sqrt()``, with gradient 0 rather than ∞ where v = 0 (∞·0 would make the chain rule NaN
    for an entry whose gradients have all been exactly zero, e.g. a dead unit's weights)."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


class TwinOptimizer:
    """The update rule of ``optimizer`` for the named parameters, as a function.

    The real optimizer and its state are never modified; each :meth:`step` returns new tensors
    and keeps its own copy of the state, so K calls are K steps continuing from the real state.
    Formulas are those of ``torch.optim``'s single-tensor implementations: Adam (L2 or decoupled
    weight decay, AMSGrad, maximize) and SGD (momentum, dampening, Nesterov, weight decay,
    maximize), everything differentiated, including Adam's second moment.

    Arguments:
        optimizer: A ``torch.optim.Adam``, ``AdamW`` or ``SGD`` holding exactly ``params``.
        params: The optimizer's parameters by name, e.g. ``dict(module.named_parameters())``.

    Raises:
        ValueError: For another optimizer class or a parameter set that differs from ``params``.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> twin = TwinOptimizer(opt, {"w": w})
        >>> twin.step({"w": w.detach()}, [torch.ones(3)])["w"]
        tensor([0.9000, 0.9000, 0.9000])
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Params):
        if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            self.kind = "adam"
        elif isinstance(optimizer, torch.optim.SGD):
            self.kind = "sgd"
        else:
            raise ValueError(f"the optimizer must be {SUPPORTED}, got {type(optimizer).__name__}")
        name_of = {id(p): k for k, p in params.items()}
        held = [p for group in optimizer.param_groups for p in group["params"]]
        if sorted(name_of.get(id(p), "?") for p in held) != sorted(params):
            raise ValueError("the optimizer must hold exactly the parameters being unrolled")
        decoupled = isinstance(optimizer, torch.optim.AdamW)
        self.hyper: dict[str, dict] = {}
        self.state: dict[str, dict[str, Tensor | float | None]] = {}
        for group in optimizer.param_groups:
            hyper = {k: v for k, v in group.items() if k != "params"}
            hyper["decoupled"] = decoupled or bool(group.get("decoupled_weight_decay", False))
            for p in group["params"]:
                name, state = name_of[id(p)], optimizer.state.get(p, {})
                buf = state.get("momentum_buffer")
                self.hyper[name] = hyper
                self.state[name] = {
                    "step": float(state.get("step", 0.0)),
                    "m": state.get("exp_avg", torch.zeros_like(p)).detach(),
                    "v": state.get("exp_avg_sq", torch.zeros_like(p)).detach(),
                    "v_max": state.get("max_exp_avg_sq", torch.zeros_like(p)).detach(),
                    "buf": None if buf is None else buf.detach(),
                }

    def step(self, params: Params, grads: Sequence[Tensor]) -> Params:
        """One step of every parameter; ``grads`` in the order of ``params``."""
        update = self._adam if self.kind == "adam" else self._sgd
        return {k: update(p, g, self.hyper[k], self.state[k]) for (k, p), g in zip(params.items(), grads)}

    @staticmethod
    def _adam(p: Tensor, g: Tensor, h: dict, s: dict) -> Tensor:
        lr, wd, eps = float(h["lr"]), float(h["weight_decay"]), float(h["eps"])
        beta1, beta2 = (float(b) for b in h["betas"])
        g = -g if h["maximize"] else g
        s["step"] += 1
        if wd != 0 and h["decoupled"]:
            p = p * (1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        s["m"] = torch.lerp(s["m"], g, 1 - beta1)
        s["v"] = torch.addcmul(s["v"] * beta2, g, g, value=1 - beta2)
        v = s["v"]
        if h["amsgrad"]:
            v = s["v_max"] = torch.maximum(s["v_max"], s["v"])
        step_size = lr / (1 - beta1 ** s["step"])
        denom = safe_sqrt(v) / (1 - beta2 ** s["step"]) ** 0.5 + eps  # ε after the bias correction
        return p - step_size * (s["m"] / denom)

    @staticmethod
    def _sgd(p: Tensor, g: Tensor, h: dict, s: dict) -> Tensor:
        momentum, wd = float(h["momentum"]), float(h["weight_decay"])
        g = -g if h["maximize"] else g
        if wd != 0:
            g = g + wd * p
        if momentum != 0:
            # torch starts the buffer at the first gradient itself, without dampening
            buf = g if s["buf"] is None else s["buf"] * momentum + (1 - float(h["dampening"])) * g
            s["buf"] = buf
            g = g + momentum * buf if h["nesterov"] else buf
        return p - float(h["lr"]) * g
