"""Test helper: each rank saves its full training state at the end of fit (for the DDP test)."""

from pathlib import Path

import pytorch_lightning as pl
import torch

from lbt_lightning.callbacks import ModeCoverageCallback


class DumpRankState(pl.Callback):
    """Writes ``rank<r>.pt`` with the module's state dict, optimizer states and the number of
    samples the last mode-coverage evaluation used."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module):
        coverage = [cb for cb in trainer.callbacks if isinstance(cb, ModeCoverageCallback)]
        state = {
            "module": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in trainer.optimizers],
            "num_evaluated": coverage[0].num_evaluated if coverage else None,
            "world_size": trainer.world_size,
            "iteration": pl_module.global_step,
            "rng": torch.get_rng_state(),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.out_dir / f"rank{trainer.global_rank}.pt")
