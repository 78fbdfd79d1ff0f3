"""The GAN baseline with the non-saturating generator loss."""

from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from lbt_lightning.lightning.optim import adversarial_optimizers
from lbt_lightning.methods.base import GenerativeModule, injected
from lbt_lightning.unroll import objectives


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
        d_loss = objectives.d_loss(self.discriminator(real), self.discriminator(self.sample(real.shape[0])))
        self.optimizer_step_on(d_opt, d_loss)
        g_loss = objectives.g_loss(self.discriminator(self.fake(real.shape[0])))
        self.generator_step(g_opt, g_loss)
        if self.log_due():
            self.log_dict({"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach()}, prog_bar=True)
