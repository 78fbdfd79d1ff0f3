"""The GAN baseline with the non-saturating generator loss, and the GAN losses of every method."""

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from lbt_lightning.lightning.optim import adversarial_optimizers
from lbt_lightning.methods.base import GenerativeModule, injected


def d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Discriminator BCE: real labelled 1, fake labelled 0."""
    ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_fake)
    real = F.binary_cross_entropy_with_logits(d_real, ones)
    return real + F.binary_cross_entropy_with_logits(d_fake, zeros)


def g_loss(d_fake: Tensor) -> Tensor:
    """Non-saturating generator loss, -log σ(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


class GAN(GenerativeModule):
    """Goodfellow et al. (2014) GAN; per iteration one D step, then one G step.

    Arguments:
        generator: x = G(z).
        discriminator: Logit D(x), shape (B,).
        generator_optimizer: None gives Adam lr 1e-3, β1 0.5 (PAPER.md §2.2, toy).
        discriminator_optimizer: None gives Adam lr 1e-4, β1 0.5 (PAPER.md §2.2).
        clip_grad_norm: Global-norm clip of the generator gradient (toy scripts: 5), or None.
        max_consecutive_skips: Iterations in a row with a skipped (non-finite) update before stopping.

    References:
        Goodfellow et al., "Generative Adversarial Nets", arXiv:1406.2661.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        clip_grad_norm: float | None = None,
        max_consecutive_skips: int = 10,
    ):
        super().__init__(generator, clip_grad_norm=clip_grad_norm, max_consecutive_skips=max_consecutive_skips)
        self.save_hyperparameters(
            ignore=injected("generator", "discriminator", "generator_optimizer", "discriminator_optimizer")
        )
        self.discriminator = discriminator
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def configure_optimizers(self):
        return adversarial_optimizers(self)

    def sample_consumers(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def training_step(self, real: Tensor, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        n = real.shape[0]
        discriminator_loss = d_loss(self.discriminator(real), self.discriminator(self.sample(n)))
        self.optimizer_step_on(d_opt, discriminator_loss)
        generator_loss = g_loss(self.discriminator(self.sample(n, grad=True)))
        self.generator_step(g_opt, generator_loss)
        if self.log_due():
            logs = {"train/d_loss": discriminator_loss.detach(), "train/g_loss": generator_loss.detach()}
            self.log_dict(logs, prog_bar=True)
