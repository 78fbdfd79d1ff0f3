"""Lightning's ``ModelCheckpoint`` with atomic writes and the path to resume from on the screen."""

import signal
import sys
import warnings
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lbt_lightning.lightning.checkpoint_io import AtomicCheckpointIO, CheckpointError

# Lightning 2.6 warns at every periodic save under manual optimization that the file holds the
# state after the optimizer steps: here that is the point (step=N.ckpt is the state after iteration N).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


class IterationCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose files are named by iteration and written atomically.

    ``every_n_train_steps`` follows ``trainer.global_step``, which counts iterations (one generator
    update each), so ``every_n_train_steps: 500`` saves ``step=500.ckpt``, ``step=1000.ckpt``, ...
    (and ``last.ckpt`` with ``save_last``). Resume with ``fit --ckpt_path <dir>/last.ckpt``, also
    with a larger ``trainer.max_steps`` to train on; load the model with
    ``Method.load_from_checkpoint(path)``.

    Writes are atomic: unless the Trainer has a checkpoint plugin of its own, Lightning's default
    is replaced by :class:`~lbt_lightning.lightning.checkpoint_io.AtomicCheckpointIO`, so a kill during a
    write leaves the previous complete file. A failed write (e.g. a full disk) stops training
    with a :class:`~lbt_lightning.lightning.checkpoint_io.CheckpointError` naming the folder. Rank 0
    names every checkpoint on stderr once it is complete (one line a save), so the place to resume
    from is on the screen even when the process is killed; when training stops on an error, it
    names the last one again and ends the ranks it launched.

    Arguments:
        filename: ``ModelCheckpoint``'s file name pattern; the default ``{step}`` is the iteration.
            None gives Lightning's ``{epoch}-{step}``.
        **kwargs: Passed to ``ModelCheckpoint`` (``every_n_train_steps``, ``dirpath``,
            ``save_last``, ``save_top_k``, ...).
    """

    # An explicit argument, not kwargs.setdefault: LightningCLI passes every ModelCheckpoint
    # argument, filename=None included, which silently restored Lightning's {epoch}-{step}.
    def __init__(self, filename: str | None = "{step}", **kwargs):
        super().__init__(filename=filename, **kwargs)

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._fitting = stage == "fit"
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default, not a user's
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if self._fitting and trainer.is_global_zero and self.dirpath is not None and Path(self.dirpath).is_dir():
            for partial in Path(self.dirpath).glob(".*.partial"):  # left by a writer killed mid-write
                partial.unlink(missing_ok=True)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        try:
            super()._save_checkpoint(trainer, filepath)
        except OSError as error:
            folder = Path(filepath).parent
            raise CheckpointError(
                f"could not write checkpoint {Path(filepath).name!r} in {str(folder)!r} ({error.strerror or error}); "
                "the checkpoints already there are intact. Free space there or set dirpath to another folder."
            ) from error
        last = Path(filepath).stem == self.CHECKPOINT_NAME_LAST or not self.save_last
        if getattr(self, "_fitting", False) and trainer.is_global_zero and last:
            # Said now, when the file is complete: a process killed later (kill -9, or under DDP by
            # Lightning's observer of a dead rank) never reaches on_exception.
            print(f"iteration {trainer.global_step}: the last complete checkpoint is {filepath}", file=sys.stderr)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        launcher = trainer.strategy.launcher
        if trainer.is_global_zero and launcher is not None:
            # Ranks this process launched: one that hangs (not in a collective, or stopped) would
            # outlive the job holding its device; Lightning kills them only on Ctrl+C.
            launcher.kill(signal.SIGKILL)
        # The error itself may be a peer's dropped connection or a full disk; say what survives.
        last = self.last_model_path or self.best_model_path
        if getattr(self, "_fitting", False) and trainer.is_global_zero and last and Path(last).is_file():
            print(
                f"training stopped after iteration {trainer.global_step} ({type(exception).__name__}); "
                f"the last complete checkpoint is {last}: resume with fit ... --ckpt_path {last}",
                file=sys.stderr,
            )

    def _monitor_candidates(self, trainer):
        candidates = super()._monitor_candidates(trainer)
        # the iteration, not the "step" metric the module logs (the last logged one when callbacks run)
        candidates["step"] = torch.tensor(trainer.global_step)
        return candidates

    def on_train_end(self, trainer, pl_module) -> None:
        # Lightning saves on its period (and at epoch ends without one); the fit's last iteration
        # is saved too, so that last.ckpt is where the run ended and a larger max_steps extends it.
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)

    def load_state_dict(self, state_dict: dict) -> None:
        # validate/test/predict --ckpt_path restore callback states too; there is nothing to resume
        # then, and Lightning would warn that the new run's checkpoint folder differs.
        if getattr(self, "_fitting", True):
            super().load_state_dict(state_dict)
