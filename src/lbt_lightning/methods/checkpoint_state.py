"""What a checkpoint holds beyond Lightning's own: every rank's RNG state, the CLI config of the
model, and the conversion of checkpoints written before ``global_step`` counted iterations or
before the estimator's state was held as flat vectors."""

import torch
import torch.distributed as dist

from lbt_lightning.lightning.checkpoint_io import CheckpointError, check_fits
from lbt_lightning.methods.updates import _distributed

STEP_PROGRESS = "epoch_loop.manual_optimization.optim_step_progress"


def count_iterations(checkpoint: dict) -> None:
    """Make a checkpoint written before ``global_step`` counted iterations count them: such a
    checkpoint keeps the iteration in a buffer ``iteration`` and Lightning's step count counts
    every optimizer step (two per GAN iteration). Checkpoints without the buffer are left as they are."""
    iteration = checkpoint.get("state_dict", {}).pop("iteration", None)
    if iteration is None:
        return
    checkpoint["global_step"] = int(iteration)
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get(STEP_PROGRESS)
    if progress is not None:
        for part in ("total", "current"):
            progress[part] |= {"ready": int(iteration), "completed": int(iteration)}


def student_state(checkpoint: dict) -> None:
    """Make a checkpoint written before the estimator's state was held by ``student`` as flat
    vectors load: such a checkpoint names it ``teacher`` and keeps Adam's moments per parameter
    (``teacher.m0``, ``teacher.v0``, ...), in the order of the estimator's parameters."""
    state = checkpoint.get("state_dict", {})
    if not any(k.startswith("teacher.") for k in state):
        return
    for key in [k for k in state if k.startswith("teacher.")]:
        state["student." + key.removeprefix("teacher.")] = state.pop(key)
    for moment in ("m", "v"):
        parts, i = [], 0
        while f"student.{moment}{i}" in state:
            parts.append(state.pop(f"student.{moment}{i}").reshape(-1))
            i += 1
        if parts:
            state[f"student.{moment}"] = torch.cat(parts)


class CheckpointState:
    """The checkpoint half of :class:`~lbt_lightning.methods.base.GenerativeModule` (a mixin)."""

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
        count_iterations(checkpoint)
        student_state(checkpoint)
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
