"""Process faults: SIGKILL at any moment (bit-exact resume), a dead or hung DDP rank (the job ends)."""

import multiprocessing
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import fault_run
import pytest
import torch
from paths import EXPERIMENTS, child_env
from pytorch_lightning.strategies import DDPStrategy

from lbt_lightning.lightning.checkpoint_io import load_checkpoint_file

# Children fork from a server that has imported Lightning once: a restart costs ~50 ms, not a
# 3-10 s interpreter start, so ten kills fit in the default test run. (The server does not see
# tests/ on sys.path: the packages are preloaded, fault_run is imported by each child.)
FORKSERVER = multiprocessing.get_context("forkserver")
PRELOAD = ("callbacks", "data", "estimators", "lightning.checkpoint_io", "lightning.cli", "methods", "networks")
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
    assert any(".student.m" in k for k in a) and any(".student.t" in k for k in a)
    for key in a:
        same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
        assert same, key
    assert not list((killed / "ckpt").glob(".*.partial")), "a killed write's partial file was left"


# ---- a dead DDP rank --------------------------------------------------------------------------


def test_ddp_overlay_sets_the_process_group_timeout(tmp_path):
    built = fault_run.cli(
        "lbt_gan", tmp_path, "--config", str(EXPERIMENTS / "ddp.yaml"), "--trainer.accelerator=cpu", run=False
    )
    assert isinstance(built.trainer.strategy, DDPStrategy) and built.trainer.strategy._timeout == timedelta(minutes=5)


def ddp_command(folder: Path, marker: Path, iterations: int, signal: str, timeout: str) -> list[str]:
    """One command for the first run and its resumption: ``--ckpt_path last`` finds nothing the
    first time and the failed run's last.ckpt the second; KillRank fires once (``marker``)."""
    return [
        sys.executable, "-m", "lbt_lightning", "fit",
        "--config", str(EXPERIMENTS / "ring/lbt_gan.yaml"), "--config", str(EXPERIMENTS / "ddp.yaml"),
        f"--trainer.strategy.init_args.timeout={timeout}",
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.max_steps={iterations}",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--data.init_args.batch_size=16",
        *fault_run.SMALL,
        "--trainer.callbacks=lbt_lightning.callbacks.IterationCheckpoint",
        "--trainer.callbacks.every_n_train_steps=1", "--trainer.callbacks.save_last=true",
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
    env = child_env()  # tests/ for fault_run
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ended = time.time()
    killed_at = float(marker.read_text().split()[0])
    print(f"\nrank 0 exited {ended - killed_at:.1f} s after rank 1 got SIG{signal}, exit code {first.returncode}")
    assert first.returncode != 0 and ended - killed_at < limit
    last = tmp_path / "ckpt" / "last.ckpt"
    assert f"the last complete checkpoint is {last}" in first.stderr, first.stderr[-2000:]
    assert int(load_checkpoint_file(last)["global_step"]) == 3

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {last}" in second.stderr + second.stdout
    assert int(load_checkpoint_file(last)["global_step"]) == iterations
