"""How every method updates its networks: steps that skip a non-finite update on every DDP rank
together, gradients averaged over ranks, and the generator's step, which is Lightning's step."""

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Updates:
    """The update half of :class:`~lbt_lightning.methods.base.GenerativeModule` (a mixin of a
    LightningModule with ``generator``, ``clip_grad_norm``, ``skipped_steps`` and ``log_due``)."""

    @property
    def reduce_estimator_grad(self) -> Callable[[Tensor], Tensor] | None:
        """The estimator's flat gradient averaged over DDP ranks (:meth:`all_reduce_mean`); None on
        one process (the estimator's update then runs each step as one compiled call with
        ``unroll_backend: compiled``)."""
        return (lambda grad: self.all_reduce_mean([grad])[0]) if _distributed() else None

    def all_reduce_mean(self, tensors: list[Tensor]) -> list[Tensor]:
        """Average tensors over DDP ranks (identity on one process). Used for updates that do not
        go through DDP's gradient hooks, e.g. the estimator's ``autograd.grad`` update."""
        if not _distributed():
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        return [chunk.view_as(t) for chunk, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]

    def all_finite(self, tensors: list[Tensor]) -> bool:
        """Whether every tensor is finite on every DDP rank: one all-reduced flag, so that all
        replicas skip an update together or apply it together."""
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all().to(torch.int32)
        if _distributed():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite)

    def optimizer_step_on(self, optimizer, loss: Tensor, clip: nn.Module | None = None) -> bool:
        """zero_grad, backward, optional global-norm clip of ``clip``'s gradients, step.
        Skips the step (and returns False) when the loss or a gradient is not finite on any rank."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        return self.step_with_grads(optimizer, loss, clip)

    def step_with_grads(self, optimizer, loss: Tensor, clip: nn.Module | None = None, *, counts: bool = False) -> bool:
        """Step ``optimizer`` on the gradients already in ``.grad`` (see :meth:`optimizer_step_on`).
        The gradients' global norm before clipping is kept in ``last_grad_norm``.

        ``counts``: step through Lightning's optimizer, which advances ``global_step`` (the
        generator's update, once per iteration; a skipped one steps with no gradients, which
        changes neither the parameters nor the optimizer's state); else the optimizer that
        Lightning wraps steps directly."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.last_grad_norm = torch.nn.utils.get_total_norm(grads).detach()
        stepper = optimizer if counts else getattr(optimizer, "optimizer", optimizer)
        if not self.all_finite([loss, self.last_grad_norm]):
            optimizer.zero_grad(set_to_none=True)
            self.record_skip()
            if counts:
                stepper.step()  # no parameter has a gradient: only the count advances
            return False
        if clip is not None and self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(clip.parameters(), self.clip_grad_norm)
        stepper.step()
        return True

    def generator_step(self, optimizer, g_loss: Tensor) -> bool:
        """The generator's update on ``g_loss``; logs ``train/grad_norm`` (before clipping) when due.
        Only the generator's gradient is computed (``torch.autograd.grad``: the discriminator's or
        the estimator's would be computed and dropped), averaged over DDP ranks explicitly."""
        optimizer.zero_grad()
        params = list(self.generator.parameters())
        for p, g in zip(params, self.generator_grads(g_loss), strict=True):
            p.grad = g
        return self.generator_step_with_grads(optimizer, g_loss)

    def generator_grads(self, loss: Tensor) -> list[Tensor]:
        """d loss / d θ_G (zeros for unused parameters), averaged over DDP ranks."""
        params = list(self.generator.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return self.all_reduce_mean([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])

    def generator_step_with_grads(self, optimizer, g_loss: Tensor) -> bool:
        """:meth:`generator_step` on the gradients already in ``.grad``."""
        stepped = self.step_with_grads(optimizer, g_loss, clip=self.generator, counts=True)
        if self.log_due():
            self.log("train/grad_norm", self.last_grad_norm)
        return stepped

    def record_skip(self) -> None:
        self.skipped_steps += 1
        self._skipped_this_iteration = True

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._skipped_this_iteration = False
