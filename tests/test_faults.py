"""Faults a long run meets: SIGKILL at any moment, bad checkpoints, a full disk, bad image files."""

import argparse
import errno
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import fault_run
import pytest
import torch
from paths import EXPERIMENTS
from PIL import Image
from pytorch_lightning.strategies import DDPStrategy
from trainers import quiet_trainer

from lbt_lightning.callbacks import IterationCheckpoint
from lbt_lightning.checkpoint_io import AtomicCheckpointIO, CheckpointError, check_fits, load_checkpoint_file
from lbt_lightning.cli import main
from lbt_lightning.data import RingDataModule
from lbt_lightning.data.images import ImageFolderDataModule

# Children fork from a server that has imported Lightning once: a restart costs ~50 ms, not a
# 3-10 s interpreter start, so ten kills fit in the default test run. (The server does not see
# tests/ on sys.path: the packages are preloaded, fault_run is imported by each child.)
FORKSERVER = multiprocessing.get_context("forkserver")
PRELOAD = ("callbacks", "checkpoint_io", "data", "estimators", "methods", "networks")
FORKSERVER.set_forkserver_preload(["pytorch_lightning", *(f"lbt_lightning.{m}" for m in PRELOAD)])


def start(folder: Path, iterations: int):
    process = FORKSERVER.Process(target=fault_run.train, args=(str(folder), iterations))
    process.start()
    return process


def marks(folder: Path) -> list[str]:
    path = folder / "marks"
    return path.read_text().split() if path.exists() else []


def iterations_done(folder: Path) -> int:
    done = [int(m[1:]) for m in marks(folder) if m.startswith("i")]
    return max(done, default=0)


def wait_for(process, condition, timeout: float = 60.0) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not process.is_alive():
            return False
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.001)
    return True


def flatten(dump: dict) -> dict[str, torch.Tensor]:
    """Every value of a DumpRankState dump (module state, optimizer states), by a dotted name."""
    out = {}

    def visit(value, name):
        if isinstance(value, dict):
            for k, v in value.items():
                visit(v, f"{name}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                visit(v, f"{name}.{i}")
        else:
            out[name] = value

    visit({"module": dump["module"], "optimizers": dump["optimizers"]}, "")
    return out


def run_to_end(folder: Path, iterations: int) -> dict:
    process = start(folder, iterations)
    process.join(120)
    assert process.exitcode == 0, f"child exit code {process.exitcode}"
    return torch.load(folder / "dump" / "rank0.pt", weights_only=False)


def kill_repeatedly(folder: Path, iterations: int, kills: int, seed: int, period: float) -> list[dict]:
    """SIGKILL a run ``kills`` times, restarting it from last.ckpt each time. Kill moment j, drawn
    from ``seed``: after the child's ``k``-th new mark of kind ``event``, wait ``delay``. Event
    ``i`` (an iteration's updates done) with a delay up to one iteration's ``period`` lands in a
    checkpoint write or in the next updates; event ``w`` (a write begins: two per iteration,
    ``iteration=N.ckpt`` then ``last.ckpt``) with a delay up to a third of it, mostly in the write."""
    rng, log = random.Random(seed), []
    while len(log) < kills:
        event = rng.choice("iw")
        k = rng.randint(1, 3) if event == "i" else rng.randint(1, 6)
        delay = rng.uniform(0.0, period if event == "i" else period / 3)
        before = len(marks(folder))
        process = start(folder, iterations)
        seen = lambda b=before, e=event, k=k: sum(m[0] == e for m in marks(folder)[b:]) >= k  # noqa: E731
        assert wait_for(process, seen), f"the run ended before kill {len(log) + 1}"
        time.sleep(delay)
        process.kill()
        process.join(30)
        writes = [m for m in marks(folder)[before:] if m in ("w", "d")]
        log.append(
            {
                "after": f"{k} x {event}",
                "delay_ms": round(1000 * delay, 1),
                "iteration": iterations_done(folder),
                "in_write": bool(writes) and writes[-1] == "w",
                "partial_left": bool(list((folder / "ckpt").glob(".*.partial"))),
            }
        )
    return log


# 10 kills take ~5 s here (after ~3 s for the fork server); 40 under `make test-slow`.
@pytest.mark.parametrize("kills", [10, pytest.param(40, marks=pytest.mark.slow)])
def test_sigkill_anywhere_resumes_bit_exact(kills, tmp_path):
    iterations = 4 * kills + 4  # each restart advances at most 3 iterations before its kill (+1 replayed)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir(), killed.mkdir()
    start(reference, 0).join()  # starts the fork server, so that the timing below is the run's
    t0 = time.monotonic()
    expected = run_to_end(reference, iterations)
    period = (time.monotonic() - t0) / iterations  # one iteration with its checkpoint write, or a bit more

    log = kill_repeatedly(killed, iterations, kills, seed=14, period=period)
    got = run_to_end(killed, iterations)
    in_write = sum(kill["in_write"] for kill in log)
    print(f"\n{kills} kills, {in_write} inside a checkpoint write, iteration period {1000 * period:.1f} ms")
    for kill in log:
        print(kill)

    assert got["iteration"] == expected["iteration"] == iterations
    a, b = flatten(expected), flatten(got)
    assert a.keys() == b.keys()
    assert any(".teacher.m" in k for k in a) and any(".teacher.t" in k for k in a)
    for key in a:
        same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
        assert same, key
    assert not list((killed / "ckpt").glob(".*.partial")), "a killed write's partial file was left"


# ---- bad checkpoints ---------------------------------------------------------------------------

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
    args += ["--trainer.limit_train_batches=1", "--data.init_args.batch_size=8", "--trainer.enable_progress_bar=false"]
    args += SMALL if method == "lbt_gan" else ["--model.init_args.generator.init_args.hidden=[8]"]
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        return main(["fit", *args, *extra] if run else [*args, *extra], run=run)


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A good LBT-GAN checkpoint and one file per fault, each with what its error must say."""
    root = tmp_path_factory.mktemp("checkpoints")
    cli("lbt_gan", root / "lbt_gan")
    good = next((root / "lbt_gan").rglob("last.ckpt"))
    cli("gan", root / "gan")
    data = good.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (root / "random.ckpt").write_bytes(random.Random(0).randbytes(4096))
    # What a 3-D run's checkpoint holds: the same method and networks, 3 outputs/inputs.
    three_d = [
        "--model.init_args.generator.init_args.out_features=3",
        "--model.init_args.estimator.init_args.data_shape=[3]",
        "--model.init_args.discriminator.init_args.in_features=3",
    ]
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["state_dict"] = cli("lbt_gan", root / "unused", *three_d, run=False).model.state_dict()
    hparams = checkpoint["hyper_parameters"]
    hparams["generator"]["init_args"]["out_features"] = 3
    hparams["estimator"]["init_args"]["data_shape"] = [3]
    hparams["discriminator"]["init_args"]["in_features"] = 3
    torch.save(checkpoint, root / "shape3.ckpt")
    torch.save({**checkpoint, "extra": argparse.Namespace(x=1)}, root / "pickled.ckpt")
    return {
        "truncated": (root / "truncated.ckpt", "is truncated"),
        "random_bytes": (root / "random.ckpt", "is not a PyTorch checkpoint"),
        "other_method": (next((root / "gan").rglob("last.ckpt")), "is a lbt_lightning.methods.GAN checkpoint"),
        "other_data_shape": (root / "shape3.ckpt", "is for other data: generator output shape (3,) != data shape (2,)"),
        "missing": (root / "missing.ckpt", "does not exist"),
        "pickled_objects": (root / "pickled.ckpt", "weights_only=True refuses"),
    }


@pytest.mark.parametrize(
    "fault", ["truncated", "random_bytes", "other_method", "other_data_shape", "missing", "pickled_objects"]
)
def test_bad_ckpt_path_stops_with_one_line(fault, bad_checkpoints, tmp_path):
    path, expected = bad_checkpoints[fault]
    with pytest.raises(SystemExit) as stop:
        cli("lbt_gan", tmp_path, f"--ckpt_path={path}", "--trainer.callbacks+=fault_run.FailOnTrainStart")
    message = str(stop.value.code)
    assert "\n" not in message and repr(str(path)) in message and expected in message, message


def test_state_dict_of_another_shape_is_named(tmp_path):
    """A Python-built model (no saved config) and a checkpoint whose tensors have other shapes."""
    two, three = fault_run.tiny_lbt_gan(2), fault_run.tiny_lbt_gan(3)
    with pytest.raises(CheckpointError, match=r"'x.ckpt' does not fit this LBTGAN: generator\.\S+ has shape \(3, 8\)"):
        check_fits(two, {"state_dict": three.state_dict()}, "x.ckpt")


# ---- a full disk ------------------------------------------------------------------------------


class FullDisk(AtomicCheckpointIO):
    """Disk space for ``room`` checkpoint writes; the next one fails half-way with ENOSPC."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room

    def _write(self, f, data):
        if self.room == 0:
            f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        super()._write(f, data)


def test_full_disk_keeps_last_checkpoint_and_names_the_folder(tmp_path):
    folder = tmp_path / "ckpt"
    checkpoint = IterationCheckpoint(dirpath=folder, every_n_iterations=1, save_last=True)
    # room for iteration 1 (iteration=1.ckpt, last.ckpt); iteration 2's first write fails
    trainer = quiet_trainer(4, enable_checkpointing=True, callbacks=[checkpoint], plugins=[FullDisk(room=2)])
    with pytest.raises(CheckpointError, match=f"in '{folder}' \\(No space left on device\\)"):
        trainer.fit(fault_run.tiny_lbt_gan(2), RingDataModule(batch_size=8))
    assert sorted(p.name for p in folder.iterdir()) == ["iteration=1.ckpt", "last.ckpt"]  # no partial file
    assert int(load_checkpoint_file(folder / "last.ckpt")["state_dict"]["iteration"]) == 1


def test_partial_file_is_renamed_within_the_folder(tmp_path, monkeypatch):
    """The rename that publishes a checkpoint stays in one folder (one file system: atomic)."""
    renames = []
    monkeypatch.setattr(os, "replace", lambda src, dst: renames.append((Path(src), Path(dst))) or shutil.move(src, dst))
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "a" / "last.ckpt")
    assert renames == [(tmp_path / "a" / ".last.ckpt.partial", tmp_path / "a" / "last.ckpt")]
    assert load_checkpoint_file(tmp_path / "a" / "last.ckpt") == {"state_dict": {}}


# ---- bad image files --------------------------------------------------------------------------


def image_folder(root: Path, n: int = 6) -> Path:
    for i in range(n):
        Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(root / f"{i}.png")
    return root


def test_corrupt_image_is_named_at_setup(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "2.png").write_bytes((tmp_path / "2.png").read_bytes()[:40])  # cut short
    (tmp_path / "notes.jpg").write_text("not an image")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"'.*2\.png' is not a readable image .*2 such files"):
        dm.setup("fit")


def test_corrupt_images_skipped_and_counted_when_asked(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "notes.jpg").write_text("not an image")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=2, num_workers=0, bad_files="skip")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image files"):
        dm.setup("fit")
    assert len(dm.dataset) == 6 and dm.skipped_files == [str(tmp_path / "notes.jpg")]


def test_empty_image_folder_names_the_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"root='{tmp_path}' holds 0 images"):
        ImageFolderDataModule(str(tmp_path)).setup("fit")


# ---- a dead DDP rank --------------------------------------------------------------------------


def test_ddp_overlay_sets_the_process_group_timeout(tmp_path):
    built = cli("lbt_gan", tmp_path, "--config", str(EXPERIMENTS / "ddp.yaml"), "--trainer.accelerator=cpu", run=False)
    assert isinstance(built.trainer.strategy, DDPStrategy) and built.trainer.strategy._timeout == timedelta(minutes=5)


def ddp_command(folder: Path, marker: Path, iterations: int, signal: str, timeout: str) -> list[str]:
    """One command for the first run and its resumption: ``--ckpt_path last`` finds nothing the
    first time and the failed run's last.ckpt the second; KillRank fires once (``marker``)."""
    return [
        sys.executable, "-m", "lbt_lightning", "fit",
        "--config", str(EXPERIMENTS / "ring/lbt_gan.yaml"), "--config", str(EXPERIMENTS / "ddp.yaml"),
        f"--trainer.strategy.init_args.timeout={timeout}",
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.limit_train_batches={iterations}",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--data.init_args.batch_size=16",
        *SMALL,
        "--trainer.callbacks=lbt_lightning.callbacks.IterationCheckpoint",
        "--trainer.callbacks.every_n_iterations=1", "--trainer.callbacks.save_last=true",
        f"--trainer.callbacks.dirpath={folder / 'ckpt'}",
        "--trainer.callbacks+=fault_run.KillRank", "--trainer.callbacks.rank=1", "--trainer.callbacks.at=4",
        f"--trainer.callbacks.marker={marker}", f"--trainer.callbacks.signal={signal}",
        "--ckpt_path=last",
    ]  # fmt: skip


@pytest.mark.slow  # two 2-process runs, ~10 s each here (+ the timeout for a hung rank)
@pytest.mark.parametrize(
    ("signal", "timeout", "limit"),
    [("KILL", "0:01:00", 60), ("STOP", "0:00:10", 30)],  # dead: a reset connection; hung: the timeout
)
def test_dead_ddp_rank_ends_the_job_and_the_same_command_resumes(signal, timeout, limit, tmp_path):
    marker, iterations = tmp_path / "killed", 8
    command = ddp_command(tmp_path, marker, iterations, signal, timeout)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ended = time.time()
    killed_at = float(marker.read_text().split()[0])
    print(f"\nrank 0 exited {ended - killed_at:.1f} s after rank 1 got SIG{signal}, exit code {first.returncode}")
    assert first.returncode != 0 and ended - killed_at < limit
    last = tmp_path / "ckpt" / "last.ckpt"
    assert f"the last complete checkpoint is {last}" in first.stderr, first.stderr[-2000:]
    assert int(load_checkpoint_file(last)["state_dict"]["iteration"]) == 3

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {last}" in second.stderr + second.stdout
    assert int(load_checkpoint_file(last)["state_dict"]["iteration"]) == iterations
