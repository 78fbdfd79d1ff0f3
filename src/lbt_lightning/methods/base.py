"""``GenerativeModule``: what every method shares (generator, sampling, iteration counter)."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn

from lbt_lightning.data.evaluation import SAMPLE_CHUNK, chunk_noise, rank_chunks
from lbt_lightning.data.value_range import check_within
from lbt_lightning.lightning.checkpoint_io import CheckpointError, check_fits
from lbt_lightning.lightning.precision import check_precision, full_precision
from lbt_lightning.unroll.backends import FakeBatches, ReduceGrads


def injected(*names: str) -> list[str]:
    """The ``ignore`` list for ``save_hyperparameters``: empty when LightningCLI builds the module
    (it then saves the model's whole config, every injected module and optimizer as
    ``class_path``/``init_args``, so ``Method.load_from_checkpoint(path)`` rebuilds them), else
    ``names``: modules and optimizer callables built in Python are not hyper-parameters (pickling
    them would bloat or break the checkpoint); pass the modules to ``load_from_checkpoint`` again."""
    return [] if _given_hyperparameters.get() is not None else list(names)


def _distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def _evaluation_forward(module: nn.Module):
    """``module`` in training mode (BatchNorm with batch statistics) for the block, then its
    modes and buffers (running statistics, ``num_batches_tracked``) exactly as before."""
    modes = {m: m.training for m in module.modules()}
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    module.train()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.train(training)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])


def _uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or not module.track_running_stats)


class GenerativeModule(pl.LightningModule):
    """Base LightningModule for an implicit generator x = G(z), z ~ N(0, I).

    Methods use manual optimization. One *iteration* is one batch of real data and one generator
    update; ``iteration`` is the 1-based number of the current iteration (during and after it,
    so callbacks and checkpoints at the end of iteration N see N) and is checkpointed. Lightning's
    ``global_step`` counts optimizer steps instead (two per GAN iteration), so the training
    length is stated as ``trainer.limit_train_batches`` with ``max_epochs: 1`` over the endless
    data streams, and ``trainer.max_steps`` is refused.

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
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self._consecutive_skips = 0
        self._skipped_this_iteration = False
        self._rank_rng_restored = False
        self.last_grad_norm = torch.zeros(())

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.generator.z_dim, device=self.device)

    def fake(self, n: int) -> Tensor:
        """n generated samples, differentiable with respect to the generator."""
        return self.generator(self.noise(n))

    @property
    def batch_independent(self) -> bool:
        """Whether a sample of the generator depends only on its own z, so that one call can draw
        several batches (:meth:`fakes`): False when the generator has a BatchNorm layer that
        normalises with batch statistics (in training mode, or without running statistics), or
        when it sets ``batch_independent = False`` itself (e.g. for a minibatch-statistics layer)."""
        flag = getattr(self.generator, "batch_independent", None)
        if flag is not None:
            return bool(flag)
        return not any(_uses_batch_statistics(m) for m in self.generator.modules())

    def fakes(self, n: int, *, grad: bool = True) -> FakeBatches:
        """A sampler of fresh batches of n generated samples: ``fakes(n)()`` is one batch,
        ``fakes(n).batches(k)`` k of them. For the teaching loss (``grad=True``) the k batches
        come from one generator call where :attr:`batch_independent` (one backward through the
        generator instead of k); the estimator's update (``grad=False``) calls it per batch,
        which measured 3 ms faster per ring iteration on a CPU than one call on n_est·K·n
        samples, whose activations outgrow the cache."""
        return FakeBatches(self.generator, self.noise, n, grad=grad, batched=grad and self.batch_independent)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n generated samples without a graph, for training (e.g. the discriminator's fake batch):
        in the generator's current mode, BatchNorm statistics updated as in any training forward.
        Evaluations use :meth:`sample_indexed` instead."""
        return self.generator(self.noise(n))

    @torch.no_grad()
    def sample_indexed(self, indices: Tensor) -> Tensor:
        """Sample i for each index i: the one sampling path of every evaluation (fit-time
        callbacks, ``validate``, ``test``, ``predict``, the demo and the benchmarks).

        Sample i is G(z_i), z_i drawn by a generator seeded with i, computed within its *chunk*,
        the ``SAMPLE_CHUNK`` indices ``[c·C, (c+1)·C)`` with c = i // C, in training mode: a
        BatchNorm layer normalises with that chunk's statistics, the mode the generator trains
        in (docs/evaluation.md has the measurement that chose it). No parameter or buffer
        changes (running statistics are restored), and sample i depends on nothing but the
        model and i: not on how many samples are drawn, the batch size, the number of devices
        or the Trainer's mode. Runs in full precision also under ``bf16-mixed``.
        """
        indices = indices.detach().cpu().long()
        if len(indices) == 0:
            return self.generator(torch.zeros(0, self.generator.z_dim, device=self.device))
        size = SAMPLE_CHUNK
        chunks = torch.unique(indices // size)  # sorted
        with full_precision(self.device), _evaluation_forward(self.generator):
            outputs = [self.generator(chunk_noise(int(c), size, self.generator.z_dim).to(self.device)) for c in chunks]
        position = torch.searchsorted(chunks, indices // size) * size + indices % size
        return torch.cat(outputs)[position.to(self.device)]

    def sample_chunks(self, n: int, rank: int = 0, world_size: int = 1) -> Iterator[Tensor]:
        """Samples ``0..n-1`` of :meth:`sample_indexed` that rank ``rank`` of ``world_size``
        scores, one chunk at a time: chunks ``rank, rank + W, ...``, as Lightning's validate,
        test and predict loops serve them (:class:`~lbt_lightning.data.evaluation.RankShard`)."""
        for indices in rank_chunks(n, rank, world_size):
            yield self.sample_indexed(indices)

    def validation_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        """Generated samples for the evaluation callbacks (``on_validation_batch_end``)."""
        return self.sample_indexed(indices)

    def test_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        return self.sample_indexed(indices)

    def predict_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        return self.sample_indexed(indices)

    def sample_consumers(self) -> dict[str, nn.Module]:
        """Submodules that take generator samples as input, checked for shape before training."""
        return {}

    def on_fit_start(self) -> None:
        if self.trainer.max_steps != -1:
            raise ValueError(
                f"trainer.max_steps={self.trainer.max_steps} counts optimizer steps, not iterations; "
                "set trainer.limit_train_batches to the number of iterations (with max_epochs: 1)"
            )
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
        if self.trainer.num_training_batches == float("inf"):  # known only once the data is set up
            raise ValueError(
                "the data stream is endless: set trainer.limit_train_batches to the number of iterations "
                "(with max_epochs: 1)"
            )

    def log_due(self) -> bool:
        """Whether this iteration logs its losses: every ``trainer.log_every_n_steps``-th
        iteration (when Lightning's loggers write them) and the fit's last one (the progress bar
        and the final metrics). A ``self.log`` call costs about 0.4 ms on a CPU."""
        every = self.trainer.log_every_n_steps
        return (every > 0 and int(self.iteration) % every == 0) or self.iterations_left() <= 0

    def iterations_left(self) -> float:
        """Iterations the running fit has still to do (inf for an unlimited one)."""
        trainer = self.trainer
        if not trainer.max_epochs or trainer.max_epochs < 0:
            return float("inf")
        return trainer.num_training_batches * trainer.max_epochs - int(self.iteration)

    def _check_shapes(self) -> None:
        shape = tuple(self.sample_indexed(torch.arange(2)).shape[1:])
        data_shape = getattr(self.trainer.datamodule, "data_shape", None)
        if data_shape is not None and tuple(data_shape) != shape:
            raise ValueError(f"generator output shape {shape} != data shape {tuple(data_shape)}")
        for name, module in self.sample_consumers().items():
            expected = getattr(module, "in_shape", None)
            if expected is not None and tuple(expected) != shape:
                raise ValueError(f"generator output shape {shape} != {name} input shape {tuple(expected)}")

    # ---- updates -----------------------------------------------------------------------------

    @property
    def reduce_estimator_grads(self) -> ReduceGrads | None:
        """:meth:`all_reduce_mean` under DDP, None on one process (the estimator's update then
        runs each step as one compiled call with ``unroll_backend: compiled``)."""
        return self.all_reduce_mean if _distributed() else None

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

    def step_with_grads(self, optimizer, loss: Tensor, clip: nn.Module | None = None) -> bool:
        """Step ``optimizer`` on the gradients already in ``.grad`` (see :meth:`optimizer_step_on`).
        The gradients' global norm before clipping is kept in ``last_grad_norm``."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.last_grad_norm = torch.nn.utils.get_total_norm(grads).detach()
        if not self.all_finite([loss, self.last_grad_norm]):
            optimizer.zero_grad()
            self.record_skip()
            return False
        if clip is not None and self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(clip.parameters(), self.clip_grad_norm)
        optimizer.step()
        return True

    def generator_step(self, optimizer, g_loss: Tensor) -> bool:
        """The generator's update on ``g_loss``; logs ``train/grad_norm`` (before clipping) when due."""
        optimizer.zero_grad()
        self.manual_backward(g_loss)
        return self.generator_step_with_grads(optimizer, g_loss)

    def generator_step_with_grads(self, optimizer, g_loss: Tensor) -> bool:
        """:meth:`generator_step` on the gradients already in ``.grad``."""
        stepped = self.step_with_grads(optimizer, g_loss, clip=self.generator)
        if self.log_due():
            self.log("train/grad_norm", self.last_grad_norm)
        return stepped

    def record_skip(self) -> None:
        self.skipped_steps += 1
        self._skipped_this_iteration = True

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.iteration += 1
        self._skipped_this_iteration = False

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.log_due():
            self.log("train/skipped_steps", self.skipped_steps.float())
        self._consecutive_skips = self._consecutive_skips + 1 if self._skipped_this_iteration else 0
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise RuntimeError(
                f"non-finite loss or gradient in {self._consecutive_skips} consecutive iterations "
                f"(up to iteration {int(self.iteration)}); updates were skipped. Lower the learning rates, "
                "check the data, or raise max_consecutive_skips."
            )

    # ---- checkpointing -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not checkpoint RNG state; without it a resumed run draws other z. Every
        # rank runs this hook (rank 0 writes the file), so under DDP each rank's state is gathered.
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = states
        if _distributed():
            ranks = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, states)
            checkpoint["rng_states"], checkpoint["rng_states_per_rank"] = ranks[0], ranks

    def _check_checkpoint(self, checkpoint: dict, path) -> None:
        """:class:`CheckpointError` naming ``path`` when it does not fit this module or this run's data
        (the CLI rebuilds the networks from a checkpoint's config, so only the data can differ)."""
        check_fits(self, checkpoint, path)
        try:
            with torch.random.fork_rng(devices=[]):  # still on the CPU: restore precedes device placement
                self._check_shapes()
        except ValueError as error:
            raise CheckpointError(f"checkpoint {str(path)!r} is for other data: {error}") from error

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is not None and self.strict_loading:  # --ckpt_path: one line, before load_state_dict
            self._check_checkpoint(checkpoint, self._trainer.ckpt_path)
        saved = checkpoint.get("hyper_parameters", {})
        if "_instantiator" in saved and "_instantiator" not in self.hparams:
            # load_from_checkpoint rebuilt the modules from the saved CLI config; keep that config
            # (not the module objects) so that a checkpoint of this model loads again.
            self.save_hyperparameters(dict(saved), logger=False)
        states = checkpoint.get("rng_states")
        per_rank = checkpoint.get("rng_states_per_rank")
        world_size = dist.get_world_size() if _distributed() else 1
        if per_rank is not None and len(per_rank) == world_size:
            states, self._rank_rng_restored = per_rank[self.global_rank], True
        if states is not None:
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
