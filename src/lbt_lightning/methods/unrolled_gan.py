"""The Unrolled GAN baseline: the generator's loss through K differentiable discriminator steps."""

from typing import Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torch.func import functional_call

from lbt_lightning.lightning.optim import build_optimizer
from lbt_lightning.lightning.precision import full_precision
from lbt_lightning.methods.base import GenerativeModule, injected
from lbt_lightning.methods.gan import d_loss, g_loss
from lbt_lightning.unroll.twin_optimizer import SUPPORTED, TwinOptimizer

GeneratorLoss = Literal["minimax", "non_saturating"]
GENERATOR_LOSSES = ("minimax", "non_saturating")


class UnrolledGAN(GenerativeModule):
    """Metz et al. (2017) Unrolled GAN. Per iteration: one ordinary step of the discriminator's
    optimizer, then the generator descends f(θ_G, θ_D^K(θ_G)), where θ_D^K is K differentiable
    steps of that same optimizer from the just-updated θ_D and its current state (Adam's m, v,
    t; SGD's momentum) on the same real and fake batch, with the full second-order terms.

    The unrolled steps are :class:`~lbt_lightning.unroll.twin_optimizer.TwinOptimizer`: the real
    optimizer's own formulas, descending ``d_loss`` as the real step does, differentiated through
    every moment as the authors' Keras Adam is. (``torch.optim.Adam`` adds ε after the
    bias-corrected square root, Keras before the bias correction: a difference only for
    gradients of order ε.) Without a graph an unrolled step equals
    ``discriminator_optimizer.step()`` (tested). The authors' demo computes the discriminator
    and generator updates from the same θ_D; here the discriminator steps first, as in
    :class:`~lbt_lightning.methods.gan.GAN`.

    Arguments:
        generator: x = G(z).
        discriminator: Logit D(x), shape (B,). BatchNorm buffers would be updated by every
            unrolled forward; the paper's toy networks have none.
        unroll_steps: K (the authors' demo: 5).
        generator_loss: ``"minimax"``: f = -d_loss at θ_D^K, the saddle objective the paper
            unrolls; ``"non_saturating"``: -log D_{θ_D^K}(G(z)).
        generator_optimizer: None gives Adam lr 1e-3, β1 0.5 (the authors' demo).
        discriminator_optimizer: Adam, AdamW or SGD (any of their options); None gives Adam
            lr 1e-4, β1 0.5 (the demo).
        clip_grad_norm: Global-norm clip of the generator gradient, or None.
        max_consecutive_skips: Iterations in a row with a skipped (non-finite) update before stopping.

    References:
        Metz, Poole, Pfau, Sohl-Dickstein, "Unrolled Generative Adversarial Networks", ICLR 2017,
        arXiv:1611.02163; demo notebook github.com/poolio/unrolled_gan.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        unroll_steps: int = 5,  # poolio/unrolled_gan demo: unrolling_steps=5
        generator_loss: GeneratorLoss = "minimax",  # demo: g_train_opt.minimize(-unrolled_loss)
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        clip_grad_norm: float | None = None,  # the demo does not clip
        max_consecutive_skips: int = 10,
    ):
        super().__init__(generator, clip_grad_norm=clip_grad_norm, max_consecutive_skips=max_consecutive_skips)
        self.save_hyperparameters(
            ignore=injected("generator", "discriminator", "generator_optimizer", "discriminator_optimizer")
        )
        if not isinstance(unroll_steps, int) or unroll_steps < 1:
            raise ValueError(f"unroll_steps must be an integer >= 1, got {unroll_steps!r}")
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {GENERATOR_LOSSES}, got {generator_loss!r}")
        self.discriminator = discriminator
        self.unroll_steps, self.generator_loss = unroll_steps, generator_loss
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def configure_optimizers(self):
        d_opt = build_optimizer(
            "discriminator_optimizer", self.discriminator_optimizer, self.discriminator.parameters(), 1e-4
        )
        self._twin(d_opt)  # refuse an optimizer we cannot unroll before training
        # the demo: G Adam 1e-3, D Adam 1e-4, both β1 0.5 (the same as PAPER.md §2.2)
        g_opt = build_optimizer("generator_optimizer", self.generator_optimizer, self.generator.parameters(), 1e-3)
        return [g_opt, d_opt]

    def sample_consumers(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def _twin(self, optimizer: torch.optim.Optimizer) -> TwinOptimizer:
        try:
            return TwinOptimizer(optimizer, dict(self.discriminator.named_parameters()))
        except ValueError as error:
            raise ValueError(
                f"discriminator_optimizer must be {SUPPORTED} over all the discriminator's parameters "
                f"so that its steps can be unrolled: {error}"
            ) from error

    def _d_loss_at(self, params: dict[str, Tensor], real: Tensor, fake: Tensor) -> Tensor:
        d_real = functional_call(self.discriminator, params, (real,))
        return d_loss(d_real, functional_call(self.discriminator, params, (fake,)))

    def unrolled_discriminator(
        self, real: Tensor, fake: Tensor, discriminator_optimizer: torch.optim.Optimizer, create_graph: bool = True
    ) -> dict[str, Tensor]:
        """θ_D^K: ``unroll_steps`` steps of ``discriminator_optimizer``'s update rule on
        ``d_loss(real, fake)`` from the current θ_D and optimizer state, neither of which changes.

        Arguments:
            real: A real batch.
            fake: G(z), with its graph; the same batches feed all K steps, as in the demo.
            discriminator_optimizer: The real optimizer whose steps are unrolled.
            create_graph: Keep the graph so that θ_D^K is differentiable with respect to ``fake``;
                ``False`` gives what K real steps on this batch would give.
        """
        twin = self._twin(discriminator_optimizer)
        params = {k: p.detach().requires_grad_() for k, p in self.discriminator.named_parameters()}
        for _ in range(self.unroll_steps):
            loss = self._d_loss_at(params, real, fake)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params = twin.step(params, grads)
            if not create_graph:
                params = {k: p.detach().requires_grad_() for k, p in params.items()}
        return params

    def unrolled_loss(self, real: Tensor, fake: Tensor, discriminator_optimizer: torch.optim.Optimizer) -> Tensor:
        """The generator's loss at θ_D^K, differentiable with respect to ``fake``.

        Returns:
            f(θ_D^K) = -d_loss (``minimax``) or the non-saturating loss at θ_D^K, computed in the
            discriminator's dtype also under autocast (``lbt_lightning.lightning.precision``).
        """
        dtype = next(self.discriminator.parameters()).dtype
        with full_precision(real.device):
            real, fake = real.to(dtype), fake.to(dtype)  # a bf16-mixed generator's output is bfloat16
            params = self.unrolled_discriminator(real, fake, discriminator_optimizer)
            if self.generator_loss == "minimax":
                return -self._d_loss_at(params, real, fake)
            return g_loss(functional_call(self.discriminator, params, (fake,)))

    def training_step(self, real: Tensor, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        n = real.shape[0]
        discriminator_loss = d_loss(self.discriminator(real), self.discriminator(self.sample(n)))
        self.optimizer_step_on(d_opt, discriminator_loss)
        generator_loss = self.unrolled_loss(real, self.sample(n, grad=True), getattr(d_opt, "optimizer", d_opt))
        self.generator_step(g_opt, generator_loss)
        if self.log_due():
            logs = {"train/d_loss": discriminator_loss.detach(), "train/g_loss": generator_loss.detach()}
            self.log_dict(logs, prog_bar=True)
