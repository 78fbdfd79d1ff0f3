"""``GenerativeModule``: what every method shares (generator, sampling, iteration counter)."""

import pytorch_lightning as pl
import torch
from torch import Tensor, nn


class GenerativeModule(pl.LightningModule):
    """Base LightningModule for an implicit generator x = G(z), z ~ N(0, I).

    Methods use manual optimization. One *iteration* is one batch of real data and one generator
    update; ``iteration`` counts them and is checkpointed. Lightning's ``global_step`` counts
    optimizer steps instead (two per GAN iteration), so the training length is stated as
    ``trainer.limit_train_batches`` with ``max_epochs: 1`` over the infinite data streams, and
    ``trainer.max_steps`` is refused.

    Arguments:
        generator: Maps z of shape (B, generator.z_dim) to samples. Must have ``z_dim``.
        clip_grad_norm: Global-norm clip of the generator gradient, or None.
    """

    def __init__(self, generator: nn.Module, *, clip_grad_norm: float | None = None):
        super().__init__()
        if not isinstance(getattr(generator, "z_dim", None), int):
            raise ValueError(f"generator ({type(generator).__name__}) needs an int attribute z_dim")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm}")
        self.automatic_optimization = False
        self.generator = generator
        self.clip_grad_norm = clip_grad_norm
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.generator.z_dim, device=self.device)

    def fake(self, n: int) -> Tensor:
        """n generated samples, differentiable with respect to the generator."""
        return self.generator(self.noise(n))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n generated samples without a graph."""
        return self.generator(self.noise(n))

    def sample_consumers(self) -> dict[str, nn.Module]:
        """Submodules that take generator samples as input, checked for shape before training."""
        return {}

    def on_fit_start(self) -> None:
        if self.trainer.max_steps != -1:
            raise ValueError(
                f"trainer.max_steps={self.trainer.max_steps} counts optimizer steps, not iterations; "
                "set trainer.limit_train_batches to the number of iterations (with max_epochs: 1)"
            )
        self._check_shapes()

    def _check_shapes(self) -> None:
        shape = tuple(self.sample(2).shape[1:])
        data_shape = getattr(self.trainer.datamodule, "data_shape", None)
        if data_shape is not None and tuple(data_shape) != shape:
            raise ValueError(f"generator output shape {shape} != data shape {tuple(data_shape)}")
        for name, module in self.sample_consumers().items():
            expected = getattr(module, "in_shape", None)
            if expected is not None and tuple(expected) != shape:
                raise ValueError(f"generator output shape {shape} != {name} input shape {tuple(expected)}")

    def optimizer_step_on(self, optimizer, loss: Tensor, clip: nn.Module | None = None) -> None:
        """zero_grad, backward, optional global-norm clip of ``clip``'s gradients, step."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        if clip is not None and self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(clip.parameters(), self.clip_grad_norm)
        optimizer.step()

    def generator_step(self, optimizer, g_loss: Tensor) -> None:
        self.optimizer_step_on(optimizer, g_loss, clip=self.generator)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.iteration += 1
