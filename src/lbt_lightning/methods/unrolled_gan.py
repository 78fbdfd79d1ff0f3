"""The Unrolled GAN baseline: the generator's loss through K differentiable discriminator steps."""

from typing import Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torch.func import functional_call

from lbt_lightning import objectives
from lbt_lightning.methods.base import GenerativeModule
from lbt_lightning.objectives import AdamConfig, InnerState
from lbt_lightning.optim import build_optimizer

GeneratorLoss = Literal["minimax", "non_saturating"]
GENERATOR_LOSSES = ("minimax", "non_saturating")


def inner_problem(optimizer: torch.optim.Optimizer, names: list[str]) -> tuple[str, float, AdamConfig, InnerState]:
    """The unroll's settings read off a real ``torch.optim.Adam`` or ``SGD``: the inner optimizer,
    its lr, Adam's constants and the state (m, v, t) that the K steps continue from."""
    if len(optimizer.param_groups) != 1 or len(optimizer.param_groups[0]["params"]) != len(names):
        raise ValueError("discriminator_optimizer must hold all the discriminator's parameters in one group")
    group = optimizer.param_groups[0]
    params = group["params"]
    plain_adam = not any(group.get(k) for k in ("amsgrad", "weight_decay", "maximize"))
    if type(optimizer) is torch.optim.Adam and plain_adam:
        state = [optimizer.state.get(p, {}) for p in params]
        m = {k: s.get("exp_avg", torch.zeros_like(p)) for k, p, s in zip(names, params, state)}
        v = {k: s.get("exp_avg_sq", torch.zeros_like(p)) for k, p, s in zip(names, params, state)}
        t = torch.as_tensor(float(state[0].get("step", 0.0)), dtype=torch.float64)
        beta1, beta2 = group["betas"]
        return "adam", float(group["lr"]), AdamConfig(beta1, beta2, group["eps"]), InnerState(m, v, t)
    if type(optimizer) is torch.optim.SGD and group["momentum"] == 0 and group["weight_decay"] == 0:
        zeros = {k: torch.zeros_like(p) for k, p in zip(names, params)}
        return "sgd", float(group["lr"]), AdamConfig(), InnerState(zeros, zeros, torch.zeros((), dtype=torch.float64))
    raise ValueError(
        "discriminator_optimizer must be torch.optim.Adam (no amsgrad, weight decay or maximize) or torch.optim.SGD "
        f"(no momentum or weight decay) so that its steps can be unrolled, got {type(optimizer).__name__}"
    )


class UnrolledGAN(GenerativeModule):
    """Metz et al. (2017) Unrolled GAN. Per iteration: one ordinary step of the discriminator's
    optimizer, then the generator descends f(θ_G, θ_D^K(θ_G)), where θ_D^K is K differentiable
    steps of that same optimizer (its lr, betas and current m, v, t) from the just-updated θ_D on
    the same real and fake batch, with the full second-order terms.

    The unroll is :func:`objectives.unroll` (ascent on ``-d_loss``): its Adam keeps the second
    moment v constant and ε inside the square root, as LBT's unroll does; the authors' Keras Adam
    differentiates through v and adds ε outside it. The authors' demo also computes the
    discriminator and generator updates from the same θ_D; here the discriminator steps first,
    as in :class:`~lbt_lightning.methods.gan.GAN`.

    Arguments:
        generator: x = G(z).
        discriminator: Logit D(x), shape (B,). BatchNorm buffers would be updated by every
            unrolled forward; the paper's toy networks have none.
        unroll_steps: K (the authors' demo: 5).
        generator_loss: ``"minimax"``: f = -d_loss at θ_D^K, the saddle objective the paper
            unrolls; ``"non_saturating"``: -log D_{θ_D^K}(G(z)).
        generator_optimizer: None gives Adam lr 1e-3, β1 0.5 (the authors' demo).
        discriminator_optimizer: Adam or plain SGD; None gives Adam lr 1e-4, β1 0.5 (the demo).
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
        inner_problem(d_opt, self._names())  # refuse an optimizer we cannot unroll before training
        # the demo: G Adam 1e-3, D Adam 1e-4, both β1 0.5 (the same as PAPER.md §2.2)
        g_opt = build_optimizer("generator_optimizer", self.generator_optimizer, self.generator.parameters(), 1e-3)
        return [g_opt, d_opt]

    def sample_consumers(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def _names(self) -> list[str]:
        return [k for k, _ in self.discriminator.named_parameters()]

    def unrolled_loss(self, real: Tensor, fake: Tensor, discriminator_optimizer: torch.optim.Optimizer) -> Tensor:
        """The generator's loss at θ_D^K, differentiable with respect to ``fake``.

        Arguments:
            real: A real batch.
            fake: G(z), with its graph; the same batches feed all K steps, as in the demo.
            discriminator_optimizer: The real optimizer whose steps are unrolled.

        Returns:
            f(θ_D^K) = -d_loss (``minimax``) or the non-saturating loss at θ_D^K.
        """
        inner, lr, adam, state = inner_problem(discriminator_optimizer, self._names())

        def objective(params: objectives.Params) -> Tensor:  # the discriminator maximises -d_loss
            d_real = functional_call(self.discriminator, params, (real,))
            return -objectives.d_loss(d_real, functional_call(self.discriminator, params, (fake,)))

        params = objectives.detached_params(self.discriminator)
        result = objectives.unroll(
            objective, params, state, steps=self.unroll_steps, lr=lr, inner_optimizer=inner, adam=adam
        )
        if self.generator_loss == "minimax":
            return objective(result.params)
        return objectives.g_loss(functional_call(self.discriminator, result.params, (fake,)))

    def training_step(self, real: Tensor, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        n = real.shape[0]
        d_loss = objectives.d_loss(self.discriminator(real), self.discriminator(self.sample(n)))
        self.optimizer_step_on(d_opt, d_loss)
        g_loss = self.unrolled_loss(real, self.fake(n), getattr(d_opt, "optimizer", d_opt))
        self.generator_step(g_opt, g_loss)
        self.log_dict({"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach()}, prog_bar=True)
