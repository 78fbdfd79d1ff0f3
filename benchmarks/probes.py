"""Measuring instruments for the benchmarks: iteration timer, peak memory, FLOP count, matmul peak."""

import re
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import Stopwatch
from torch.utils.flop_counter import FlopCounterMode


class IterationTimer(pl.Callback):
    """Wall time of every training iteration (hooks, training_step, optimizer steps)."""

    def __init__(self, watch: Stopwatch):
        self.watch = watch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = self.watch.now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.watch.times.setdefault("iteration", []).append(self.watch.now() - self.start)


class PeakMemory(pl.Callback):
    """Peak bytes allocated during the last iteration above what was live before it: CUDA's
    allocator statistics on a GPU; on CPU the resident-set high-water mark (VmHWM, reset through
    /proc/self/clear_refs), exact for tensors of 64 KiB and more when the process runs with
    ``MALLOC_MMAP_THRESHOLD_=65536`` (freed tensors go back to the OS instead of malloc's heap)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx + 1 < trainer.num_training_batches:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = self.status("VmRSS")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx + 1 < trainer.num_training_batches:
            return
        if torch.cuda.is_available():
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = self.status("VmHWM") - self.base

    @staticmethod
    def status(key: str) -> int:
        return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def median_time(fn, repeats: int = 50, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_matmul_flops() -> float:
    """The machine's best measured float32 matmul throughput (FLOP/s) over a few square sizes."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n**3 / median_time(lambda a=a, b=b: a @ b, repeats=max(5, 2**24 // n**2)))
    return best


class FlopCount(pl.Callback):
    """FLOPs of the last iteration's matmuls, as ``torch.utils.flop_counter`` counts them (eager only)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
