"""LBT-GAN: the GAN loss plus the teaching loss through the unrolled estimator (PAPER.md §4)."""

import math
from typing import Literal

import torch
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.lightning.optim import adversarial_optimizers
from lbt_lightning.methods.base import GenerativeModule, injected
from lbt_lightning.methods.gan import d_loss, g_loss
from lbt_lightning.methods.teaching import Teaching
from lbt_lightning.unroll.inner import Student

TEACH_WEIGHT_BOUNDS = (1e-8, 1e8)  # of the adaptive teaching weight; the shipped configs need 1e-4 to 1e4
BALANCE_RATE = 0.1  # log-space moving average of the teaching weight: about the last 10 teaching iterations


class LBTGAN(Teaching, GenerativeModule):
    """LBT-GAN. Per iteration: estimator update, one discriminator step, then the generator on
    ``λ · GAN loss + w · use_E · teaching loss`` (use_E = 0 during ``warmup_iterations``, when the
    estimator is not trained either: a pure GAN warm-up, PAPER.md §2.1 point 7; w = 1, the
    paper's, unless ``balance`` is set).

    On teaching iterations the generator gradient of each term is taken separately (one
    ``autograd.grad`` for λ·GAN, one backward for the teaching term; their weighted sum is what
    the optimizer steps on) and logged as ``train/grad_norm_gan`` (of λ·GAN) and
    ``train/grad_norm_teach`` (of w · teaching), with ``train/teach_weight`` (w) and
    ``train/grad_norm`` (of the sum, before clipping). Their ratio says which term drives the
    generator: the paper's λ gives ratios from 1e-4 to 1e4 on the shipped configs (docs/methods.md).

    Arguments:
        generator: x = G(z).
        estimator: The density p_φ being taught.
        discriminator: Logit D(x), shape (B,).
        gan_weight: λ (toy 0.1, images 1.0).
        warmup_iterations: Pure-GAN iterations before teaching starts (images: 3000).
        teach_every: Teach (estimator update and teaching term) on every ``teach_every``-th
            iteration after the warm-up, the GAN loss alone on the others. 1 is the paper's
            algorithm; larger values make an iteration cheaper (docs/time_to_quality.md).
        unroll_steps, unroll_lr, estimator_lr, estimator_steps, inner_optimizer, first_order, unroll_backend:
            As in :class:`~lbt_lightning.methods.lbt.LBT`.
        generator_optimizer: None gives Adam lr 1e-3, β1 0.5 (PAPER.md §2.2, toy).
        discriminator_optimizer: None gives Adam lr 1e-4, β1 0.5 (PAPER.md §2.2).
        balance: None: w = 1 (the paper). A number b > 0: w adapts so that
            ‖∇θ w·teaching‖ ≈ b · ‖∇θ λ·GAN‖: each teaching iteration moves log w a tenth of the
            way (``BALANCE_RATE``) to log(b · ‖∇θ λ·GAN‖ / ‖∇θ teaching‖), starting there at the first,
            within ``TEACH_WEIGHT_BOUNDS``; w is checkpointed. Needs ``gan_weight`` > 0.
        clip_grad_norm: Global-norm clip of the generator gradient (toy: 5), or None.
        max_consecutive_skips: Iterations in a row with a skipped (non-finite) update before stopping.
    """

    def __init__(
        self,
        generator: nn.Module,
        estimator: DensityEstimator,
        discriminator: nn.Module,
        *,
        gan_weight: float = 0.1,  # PAPER.md §2.2 lambda_gan (toy)
        warmup_iterations: int = 0,  # PAPER.md §2.1 point 7: toy scripts have none
        teach_every: int = 1,  # PAPER.md §2.1: every iteration
        unroll_steps: int = 5,  # PAPER.md §2.2
        unroll_lr: float = 1e-4,  # PAPER.md §2.2
        estimator_lr: float = 3e-4,  # PAPER.md §2.1 point 1
        estimator_steps: int = 2,  # PAPER.md §2.2 n_est (ring)
        inner_optimizer: Literal["adam", "sgd"] = "adam",
        first_order: bool = False,
        unroll_backend: Literal["eager", "compiled", "auto"] = "eager",
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        balance: float | None = None,  # None: the paper's fixed λ
        clip_grad_norm: float | None = 5.0,  # PAPER.md §2.1 point 6 (toy)
        max_consecutive_skips: int = 10,
    ):
        super().__init__(generator, clip_grad_norm=clip_grad_norm, max_consecutive_skips=max_consecutive_skips)
        self.save_hyperparameters(
            ignore=injected("generator", "estimator", "discriminator", "generator_optimizer", "discriminator_optimizer")
        )
        if not gan_weight >= 0:
            raise ValueError(f"gan_weight (λ) must be >= 0, got {gan_weight!r}")
        if not isinstance(warmup_iterations, int) or warmup_iterations < 0:
            raise ValueError(f"warmup_iterations must be an integer >= 0, got {warmup_iterations!r}")
        if not isinstance(teach_every, int) or teach_every < 1:
            raise ValueError(f"teach_every must be an integer >= 1, got {teach_every!r}")
        if balance is not None:
            if isinstance(balance, bool) or not isinstance(balance, (int, float)) or not 0 < balance < math.inf:
                raise ValueError(f"balance must be a finite number > 0 or None, got {balance!r}")
            if not gan_weight > 0:
                raise ValueError(f"balance needs gan_weight (λ) > 0 to balance against, got gan_weight={gan_weight!r}")
        self.student = Student(
            estimator,
            unroll_steps=unroll_steps,
            unroll_lr=unroll_lr,
            estimator_lr=estimator_lr,
            estimator_steps=estimator_steps,
            inner_optimizer=inner_optimizer,
            first_order=first_order,
            unroll_backend=unroll_backend,
        )
        self.discriminator = discriminator
        self._teaching_logs: dict[str, Tensor] = {}
        self.gan_weight, self.warmup_iterations, self.teach_every = gan_weight, warmup_iterations, teach_every
        self.balance = None if balance is None else float(balance)
        # w of the teaching term; 0 until the first teaching iteration with ``balance`` sets it
        self.register_buffer("teach_weight", torch.zeros((), dtype=torch.float64))
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def teaching(self, iteration: int) -> bool:
        """Whether iteration number ``iteration`` (1-based) teaches: after the warm-up, every
        ``teach_every``-th."""
        taught = iteration - self.warmup_iterations  # 1 at the first teaching iteration
        return taught >= 1 and (taught - 1) % self.teach_every == 0

    def configure_optimizers(self):
        return adversarial_optimizers(self)

    def on_train_start(self) -> None:
        super().on_train_start()
        length = self.global_step + self.iterations_left()
        if length <= self.warmup_iterations:
            rank_zero_warn(
                f"warmup_iterations={self.warmup_iterations} is at least this fit's length ({length:.0f} iterations): "
                "it trains a plain GAN and never teaches. Lower model.init_args.warmup_iterations or raise "
                "trainer.max_steps."
            )

    def hybrid_generator_step(self, optimizer, gan_term: Tensor, teach_loss: Tensor) -> Tensor:
        """The generator's step on ``gan_term + w · teach_loss``, each term's gradient taken on its
        own (see the class docstring); returns the loss that was stepped on."""
        params = list(self.generator.parameters())
        optimizer.zero_grad()
        gan_grads, teach_grads = self.generator_grads(gan_term), self.generator_grads(teach_loss)
        norm_gan = torch.nn.utils.get_total_norm(gan_grads).detach()
        norm_teach = torch.nn.utils.get_total_norm(teach_grads).detach()
        weight = self.update_teach_weight(norm_gan, norm_teach)
        for p, g_gan, g_teach in zip(params, gan_grads, teach_grads, strict=True):
            p.grad = g_gan + weight * g_teach
        total = gan_term.detach() + weight * teach_loss.detach()
        self.generator_step_with_grads(optimizer, total)
        self._teaching_logs |= {
            "train/grad_norm_gan": norm_gan,
            "train/grad_norm_teach": weight * norm_teach,
            "train/teach_weight": weight,
        }
        return total

    def update_teach_weight(self, norm_gan: Tensor, norm_teach: Tensor) -> Tensor:
        """w for this teaching iteration (float32 scalar): 1 without ``balance``; with it, the
        moving average described in the class docstring, left as it was when a norm is not
        finite or zero."""
        if self.balance is None:
            return torch.ones((), device=norm_gan.device)
        target = (self.balance * norm_gan.double() / norm_teach.double()).clamp(*TEACH_WEIGHT_BOUNDS)
        usable = torch.isfinite(target) & (norm_gan > 0) & (norm_teach > 0)
        started = self.teach_weight > 0
        log_w = torch.where(
            started, (1 - BALANCE_RATE) * self.teach_weight.clamp(min=1e-300).log() + BALANCE_RATE * target.log(),
            target.log(),
        )  # fmt: skip
        self.teach_weight.copy_(torch.where(usable, log_w.exp().clamp(*TEACH_WEIGHT_BOUNDS), self.teach_weight))
        return self.teach_weight.float()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # checkpoints from before ``balance`` have no teach_weight: 0 is "not set yet"
        checkpoint.get("state_dict", {}).setdefault("teach_weight", torch.zeros((), dtype=torch.float64))
        super().on_load_checkpoint(checkpoint)

    def sample_consumers(self) -> dict[str, nn.Module]:
        return {"estimator": self.estimator, "discriminator": self.discriminator}

    def training_step(self, real: Tensor, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        n = real.shape[0]
        teaching = self.teaching(self.global_step + 1)  # global_step counts the iterations done
        logs = self._teaching_logs  # the latest teaching iteration's losses
        if teaching:
            logs["train/e_loss"] = self.update_student(n)
        discriminator_loss = d_loss(self.discriminator(real), self.discriminator(self.sample(n)))
        self.optimizer_step_on(d_opt, discriminator_loss)
        gan_loss = g_loss(self.discriminator(self.sample(n, grad=True)))
        if teaching:
            teach_loss = self.teaching_loss(real)
            logs["train/teach_loss"] = teach_loss.detach()
            generator_loss = self.hybrid_generator_step(g_opt, self.gan_weight * gan_loss, teach_loss)
        else:
            generator_loss = self.gan_weight * gan_loss
            self.generator_step(g_opt, generator_loss)
        if self.log_due():
            self.log("train/gan_loss", gan_loss.detach())
            losses = {"train/d_loss": discriminator_loss.detach(), "train/g_loss": generator_loss.detach()}
            self.log_dict(logs | losses, prog_bar=True)
