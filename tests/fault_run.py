"""Test helpers for tests/test_faults.py and tests/test_bad_files.py: a small ring LBT-GAN run that
checkpoints every iteration, resumes from its own ``last.ckpt`` and writes progress marks that
survive a SIGKILL; callbacks that kill a DDP rank or fail if training starts; a tiny CLI run."""

import os
import signal
import sys
import time
from pathlib import Path
from unittest import mock

import pytorch_lightning as pl
import torch
from ddp_dump import DumpRankState
from paths import EXPERIMENTS
from trainers import quiet_trainer

from lbt_lightning.callbacks import IterationCheckpoint
from lbt_lightning.data import RingDataModule
from lbt_lightning.estimators import VAE
from lbt_lightning.lightning.checkpoint_io import AtomicCheckpointIO
from lbt_lightning.lightning.cli import main
from lbt_lightning.methods import LBTGAN
from lbt_lightning.networks import MLPDiscriminator, MLPGenerator


class Marks(pl.Callback):
    """Appends ``i<iteration>`` after each iteration's updates (before the checkpoint callback,
    which Lightning runs last), and ``w``/``d`` around each checkpoint write, to an unbuffered
    file: what a killed process had done, read back by the parent."""

    def __init__(self, fd: int):
        self.fd = fd
        save = AtomicCheckpointIO.save_checkpoint

        def marked(io, *args, **kwargs):  # patched in this (forked) process only
            os.write(fd, b"w\n")
            save(io, *args, **kwargs)
            os.write(fd, b"d\n")

        AtomicCheckpointIO.save_checkpoint = marked

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        os.write(self.fd, f"i{pl_module.global_step}\n".encode())


def train(folder: str, iterations: int) -> None:
    """Fit ``iterations`` iterations in ``folder`` (resuming from ``folder/ckpt/last.ckpt`` when it
    exists); marks go to ``folder/marks``, the final state to ``folder/dump/rank0.pt``."""
    torch.set_num_threads(1)
    folder = Path(folder)
    fd = os.open(folder / "marks", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    pl.seed_everything(11, verbose=False)
    model = tiny_lbt_gan(2)
    checkpoint = IterationCheckpoint(dirpath=folder / "ckpt", every_n_train_steps=1, save_last=True)
    callbacks = [Marks(fd), checkpoint, DumpRankState(str(folder / "dump"))]
    trainer = quiet_trainer(iterations, enable_checkpointing=True, default_root_dir=folder, callbacks=callbacks)
    last = folder / "ckpt" / "last.ckpt"
    trainer.fit(model, RingDataModule(batch_size=8), ckpt_path=last if last.exists() else None)


class FailOnTrainStart(pl.Callback):
    """Proves that a run stopped before training: fails if the first iteration would start."""

    def on_train_start(self, trainer, pl_module):
        raise AssertionError("training started")


def tiny_lbt_gan(dim: int) -> LBTGAN:
    """An LBT-GAN for ``dim``-dimensional data with 8-unit networks."""
    return LBTGAN(
        MLPGenerator(z_dim=4, out_features=dim, hidden=[8]),
        VAE(data_shape=[dim], latent_dim=2, hidden=[8]),
        MLPDiscriminator(in_features=dim, hidden=[8]),
        unroll_steps=2,
        estimator_steps=1,
    )


class KillRank(pl.Callback):
    """Sends ``signal`` (``KILL``: dies; ``STOP``: hangs) to DDP rank ``rank`` when iteration ``at``
    starts, once: ``marker`` records the moment (``time.time()``) and spares a resumed run."""

    def __init__(self, rank: int, at: int, marker: str, signal: str = "KILL"):
        self.rank, self.at, self.marker, self.signal = rank, at, Path(marker), signal

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.rank and pl_module.global_step + 1 == self.at and not self.marker.exists():
            self.marker.write_text(f"{time.time()!r} {os.getpid()}")
            os.kill(os.getpid(), getattr(signal, f"SIG{self.signal}"))


SMALL = [
    "--model.init_args.generator.init_args.hidden=[8]",
    "--model.init_args.estimator.init_args.hidden=[8]",
    "--model.init_args.discriminator.init_args.hidden=[8]",
    "--model.init_args.unroll_steps=2",
]


def cli(method: str, root: Path, *extra: str, run: bool = True):
    """An in-process ``lightning fit`` of a tiny ring model writing under ``root`` (``run=False``:
    only built). ``sys.argv`` is bare also in module fixtures, which run before conftest's."""
    args = ["--config", str(EXPERIMENTS / f"ring/{method}.yaml"), f"--trainer.default_root_dir={root}"]
    args += ["--trainer.max_steps=1", "--data.init_args.batch_size=8", "--trainer.enable_progress_bar=false"]
    args += SMALL if method == "lbt_gan" else ["--model.init_args.generator.init_args.hidden=[8]"]
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        return main(["fit", *args, *extra] if run else [*args, *extra], run=run)
