"""``GenerativeModule``: what every method shares, one part per file: sampling (``sampling.py``),
updates (``updates.py``), checkpoint state (``checkpoint_state.py``), and here the fit's checks,
length and logging."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn

from lbt_lightning.data.value_range import check_within
from lbt_lightning.lightning.precision import check_precision
from lbt_lightning.methods.checkpoint_state import CheckpointState
from lbt_lightning.methods.sampling import Sampling, _evaluation_forward
from lbt_lightning.methods.updates import Updates


def injected(*names: str) -> list[str]:
    """The ``ignore`` list for ``save_hyperparameters``: empty when LightningCLI builds the module
    (it then saves the model's whole config, every injected module and optimizer as
    ``class_path``/``init_args``, so ``Method.load_from_checkpoint(path)`` rebuilds them), else
    ``names``: modules and optimizer callables built in Python are not hyper-parameters (pickling
    them would bloat or break the checkpoint); pass the modules to ``load_from_checkpoint`` again."""
    return [] if _given_hyperparameters.get() is not None else list(names)


class GenerativeModule(Sampling, Updates, CheckpointState, pl.LightningModule):
    """Base LightningModule for an implicit generator x = G(z), z ~ N(0, I).

    Methods use manual optimization. One *iteration* is one batch of real data and one generator
    update, and Lightning's ``global_step`` counts iterations: only the generator's optimizer
    steps through Lightning (a skipped update counts too, as a step that changes nothing); the
    discriminator's and the estimator's updates step their optimizers directly. So
    ``trainer.max_steps`` is the training length (the data streams are endless), and
    ``ModelCheckpoint(every_n_train_steps=...)``, ``log_every_n_steps`` and the ``every_n_iterations``
    of the evaluation callbacks all count iterations. Callbacks at the end of iteration N see
    ``global_step`` N.

    Non-finite guard: an update whose loss or gradient is NaN/inf is skipped (parameters and
    optimizer state unchanged) and counted in ``train/skipped_steps``; after
    ``max_consecutive_skips`` iterations in a row with a skip, training stops with an error.

    Arguments:
        generator: Maps z of shape (B, generator.z_dim) to samples. Must have ``z_dim``.
        clip_grad_norm: Global-norm clip of the generator gradient, or None.
        max_consecutive_skips: Iterations in a row with a skipped update before stopping.
    """

    def __init__(self, generator: nn.Module, *, clip_grad_norm: float | None = None, max_consecutive_skips: int = 10):
        super().__init__()
        if not isinstance(getattr(generator, "z_dim", None), int):
            raise ValueError(f"generator ({type(generator).__name__}) needs an int attribute z_dim")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm}")
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be an integer >= 1, got {max_consecutive_skips!r}")
        self.automatic_optimization = False
        self.generator = generator
        self.clip_grad_norm = clip_grad_norm
        self.max_consecutive_skips = max_consecutive_skips
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self._consecutive_skips = 0
        self._skipped_this_iteration = False
        self._rank_rng_restored = False
        self.last_grad_norm = torch.zeros(())

    def sample_consumers(self) -> dict[str, nn.Module]:
        """Submodules that take generator samples as input, checked for shape before training."""
        return {}

    def on_fit_start(self) -> None:
        check_precision(type(self).__name__, self.trainer.precision)
        for name, module in self.sample_consumers().items():
            check_within(
                f"the {name} {type(module).__name__}", getattr(module, "support", None), self.trainer.datamodule
            )
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # keeps a resumed run's random stream exact
            self._check_shapes()
        if self.global_rank > 0 and not self._rank_rng_restored:
            # seed_everything gives every rank the same seed; each rank must draw its own z
            torch.manual_seed(int(torch.randint(2**62, ())) + self.global_rank)

    def on_train_start(self) -> None:
        trainer = self.trainer  # the number of batches is known once the data is set up
        if self.iterations_left() == float("inf"):
            raise ValueError("the data stream is endless: set trainer.max_steps to the number of iterations")
        if trainer.num_training_batches != float("inf") and trainer.max_epochs != 1:
            raise ValueError(
                f"trainer.limit_train_batches={trainer.limit_train_batches} with max_epochs={trainer.max_epochs}: "
                "every epoch would replay the same batches of the endless data stream; set trainer.max_steps to "
                "the number of iterations instead (or max_epochs: 1)"
            )

    def log_due(self) -> bool:
        """Whether this iteration logs its losses: every ``trainer.log_every_n_steps``-th
        iteration (when Lightning's loggers write them) and the fit's last one (the progress bar
        and the final metrics). A ``self.log`` call costs about 0.4 ms on a CPU."""
        every = self.trainer.log_every_n_steps
        return (every > 0 and self.global_step % every == 0) or self.iterations_left() <= 0

    def iterations_left(self) -> float:
        """Iterations the running fit has still to do after ``global_step`` (inf for an unlimited
        one): up to ``trainer.max_steps``, or to the end of ``max_epochs`` epochs of
        ``num_training_batches`` (``limit_train_batches``), whichever comes first."""
        trainer = self.trainer
        left = float("inf")
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            left = trainer.max_steps - trainer.global_step
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            left = min(left, trainer.num_training_batches * trainer.max_epochs - trainer.global_step)
        return left

    def _check_shapes(self, datamodule=None) -> None:
        """Probe the networks on 2 samples: the generator's output against the data's shape and
        each consumer's ``in_shape``; every consumer (estimator, discriminator) must return one
        number per sample, shape (2,). ``datamodule`` defaults to the Trainer's."""
        samples = self.sample_indexed(torch.arange(2))
        shape = tuple(samples.shape[1:])
        if datamodule is None:
            datamodule = self.trainer.datamodule
        data_shape = getattr(datamodule, "data_shape", None)
        if data_shape is not None and tuple(data_shape) != shape:
            raise ValueError(f"generator output shape {shape} != data shape {tuple(data_shape)}")
        for name, module in self.sample_consumers().items():
            expected = getattr(module, "in_shape", None)
            if expected is not None and tuple(expected) != shape:
                raise ValueError(f"generator output shape {shape} != {name} input shape {tuple(expected)}")
            with torch.no_grad(), _evaluation_forward(module):
                out = module(samples)
            if tuple(out.shape) != (2,):
                kind = "log_prob" if name == "estimator" else "forward"
                raise ValueError(
                    f"the {name} {type(module).__name__}.{kind} returned shape {tuple(out.shape)} for a batch of 2; "
                    "it must return one number per sample, shape (2,)"
                )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.iterations_left() <= 0:
            # Lightning writes logged values to the loggers every log_every_n_steps batches or when
            # stopping; so the last iteration's are written too, also in runs shorter than that.
            self.trainer.should_stop = True
        if self.log_due() or self.trainer.should_stop:  # Lightning writes the logs of a stopping iteration
            # "step": Lightning's loggers would write train/* at the 0-based batch count; at the
            # iteration they share the rows' step with the evaluation callbacks' val/* (periodic.log_metrics).
            self.log_dict({"train/skipped_steps": self.skipped_steps.float(), "step": float(self.global_step)})
        self._consecutive_skips = self._consecutive_skips + 1 if self._skipped_this_iteration else 0
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise RuntimeError(
                f"non-finite loss or gradient in {self._consecutive_skips} consecutive iterations "
                f"(up to iteration {self.global_step}); updates were skipped. Lower the learning rates, "
                "check the data, or raise max_consecutive_skips."
            )
