"""Shared by the benchmarks: models from the shipped configs, a quiet Trainer, machine facts."""

import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytorch_lightning as pl
import torch

from lbt_lightning.lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = {"GAN": "gan", "Unrolled GAN": "unrolled_gan", "LBT": "lbt", "LBT-GAN": "lbt_gan"}

# Dozens of short fits: keep Lightning's per-fit chatter out (compile times are in the tables).
for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|sys.argv).*")


def build(data: str, method: str, overrides: list[str] = ()) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """Model and data module of ``experiments/<data>/<method>.yaml`` over ``trainer.yaml``, through
    the CLI (so exactly what ``lightning fit`` would build), plus ``--key=value`` overrides."""
    args = ["--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / data / f"{method}.yaml")]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees the script's own arguments
    try:
        cli = main([*args, *overrides], run=False)
    finally:
        sys.argv = argv
    return cli.model, cli.datamodule


def trainer(iterations: int, callbacks: list[pl.Callback], accelerator: str = "auto", **kwargs) -> pl.Trainer:
    """A Trainer that only trains: no logger, checkpoints, progress bar or summary."""
    return pl.Trainer(
        max_epochs=1,
        limit_train_batches=iterations,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator=accelerator,
        devices=1,
        callbacks=callbacks,
        **kwargs,
    )


def summary(seconds: list[float]) -> dict[str, float]:
    """Median and spread (interquartile range, min, max) in milliseconds."""
    ms = sorted(1e3 * s for s in seconds)
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": q[1], "q1_ms": q[0], "q3_ms": q[2], "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms)}


def machine() -> dict:
    """What the numbers were measured on, and how busy the machine was."""
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    return info


def machine_line(info: dict) -> str:
    """One line for the top of a benchmark's output: when, on what, how busy."""
    return f"{info['date']}  {info['cpu']}  {info['torch_threads']} threads  load {info.get('load_average_1_5_15min')}"


def write_report(report: dict, path, **json_options) -> None:
    """``report`` as indented JSON at ``path`` (``benchmarks/results`` created if missing)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1, **json_options)


class Stopwatch:
    """Per-call wall times of wrapped callables, kept under a name (synchronising CUDA)."""

    def __init__(self):
        self.times: dict[str, list[float]] = {}

    def now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def wrap(self, obj, attr: str, name: str) -> None:
        """Replace ``obj.attr`` (a bound method) by a timed version on this instance only."""
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            start = self.now()
            out = fn(*args, **kwargs)
            self.times.setdefault(name, []).append(self.now() - start)
            return out

        object.__setattr__(obj, attr, timed)

    def reset(self) -> None:
        self.times = {}


def run_pool(fn, tasks: list, jobs: int, info: dict) -> list:
    """``[fn(t) for t in tasks]``, in ``jobs`` spawned processes (in this one for 1); adds the
    wall time and the load after to ``info`` (from :func:`machine`)."""
    import multiprocessing

    start = time.perf_counter()
    if jobs == 1:
        results = [fn(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(fn, tasks, chunksize=1)
    info["total_wall_s"] = time.perf_counter() - start
    info["load_average_after"] = machine().get("load_average_1_5_15min")
    return results
