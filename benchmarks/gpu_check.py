"""One prepared GPU check: the device tests on the GPU, then iteration time and peak memory.

Usage: ``make gpu-check`` or ``python benchmarks/gpu_check.py [--device cuda] [--budget-s 360]``;
``--device cpu --smoke`` runs every step with tiny networks in seconds (the test suite does).

1. ``pytest -k <device>`` over the device-aware tests (tests/test_devices.py, the unroll's
   equality with the real step, the compiled backend against eager, Inductor included).
2. ms/iteration (median of ``--iterations`` after ``--warmup``; the first iteration, compiling
   where it compiles, is reported apart) and peak GPU memory of GAN, LBT and LBT-GAN, eager and
   compiled unroll, float32 and bf16-mixed, on the ring (the shipped configs, batch 512) and with
   the CIFAR-10 DCGAN networks and VAE (``experiments/cifar10``, batch 512, random images); LBT
   on CIFAR-10 is LBT-GAN's estimator and unroll without the GAN term. Ratios are to GAN on the
   same data and precision; LBT-GAN on CIFAR-10 rows project the paper's 300,000 iterations
   (3,000 GAN warm-up + 297,000 LBT-GAN; evaluation time not included). On CUDA a last,
   experimental row tries CUDA graphs (``mode="reduce-overhead"``) for the compiled unroll.

Entries start in order until ``--budget-s`` seconds have passed; later ones are marked skipped.
Prints one table and writes ``benchmarks/results/gpu_check.json``.
"""

import argparse
import subprocess
import sys
import time

import pytorch_lightning as pl
import torch
from common import RESULTS, ROOT, Stopwatch, build, machine, summary, trainer, write_report
from probes import IterationTimer

from lbt_lightning.data import SyntheticImages
from lbt_lightning.methods import LBT
from lbt_lightning.unroll.compiled import CompiledUnroll

DEVICE_TESTS = ["tests/test_devices.py", "tests/test_unroll.py", "tests/test_compiled_unroll.py"]
METHODS = [("GAN", "eager"), ("LBT", "eager"), ("LBT", "compiled"), ("LBT-GAN", "eager"), ("LBT-GAN", "compiled")]
CONFIG = {"GAN": "gan", "LBT": "lbt", "LBT-GAN": "lbt_gan"}
PAPER_ITERATIONS, PAPER_WARMUP = 300_000, 3_000  # PAPER.md §6 and §2.1 point 7 (CIFAR-10 LBT-GAN)
# --smoke: the same code paths with tiny networks, K = 2 and one estimator block
SMOKE = {
    "ring": [
        "generator.init_args.hidden=[16]",
        "estimator.init_args.hidden=[16]",
        "discriminator.init_args.hidden=[16]",
    ],
    "cifar10": [
        "generator.init_args={z_dim: 8, image_size: 8, width: 16}",
        "estimator.init_args.data_shape=[3, 8, 8]",
        "estimator.init_args.hidden=[16]",
        "estimator.init_args.latent_dim=4",
        "discriminator.init_args={image_size: 8, width: 4}",
    ],
    "both": ["unroll_steps=2", "estimator_steps=1"],
}


def run_tests(device: str, smoke: bool) -> dict:
    """The device-aware tests on ``device`` in a fresh pytest process (``--smoke``: one of them)."""
    select, files = (f"{device} and sample", DEVICE_TESTS[:1]) if smoke else (device, DEVICE_TESTS)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow"]
    start = time.perf_counter()
    done = subprocess.run([*command, "-k", select, *files], cwd=ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or ["no output"]
    return {"returncode": done.returncode, "summary": lines[-1], "seconds": time.perf_counter() - start}


def make(data: str, method: str, backend: str, smoke: bool) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The model of ``experiments/<data>/<config>.yaml`` with ``backend``'s unroll, and its data."""
    config = "lbt_gan" if data == "cifar10" and method != "GAN" else CONFIG[method]
    keys = (SMOKE[data] + SMOKE["both"]) if smoke else []
    absent = {"GAN": ("estimator", "unroll"), "LBT": ("discriminator",) if config == "lbt" else ()}.get(method, ())
    keys = [k for k in keys if not k.startswith(absent)] if absent else keys
    if data == "cifar10" and method != "GAN":
        keys.append("warmup_iterations=0")  # time the teaching iterations
    if method != "GAN":
        keys.append(f"unroll_backend={backend}")
    overrides = [f"--model.init_args.{k}" for k in keys]
    overrides += ["--data.init_args.batch_size=32"] if smoke and data == "ring" else []
    model, datamodule = build(data, config, overrides)
    if data == "cifar10":
        if method == "LBT":  # LBT-GAN's generator, estimator and unroll without the GAN term
            t = model.student
            model = LBT(
                model.generator,
                model.estimator,
                **{k: getattr(t, k) for k in ("unroll_steps", "unroll_lr", "estimator_lr", "estimator_steps")},
                unroll_backend=t.unroll_backend,
                generator_optimizer=model.generator_optimizer,
                clip_grad_norm=None,  # PAPER.md §2.1 point 6: the image scripts do not clip
            )
        image_size = model.generator.out_shape[-1]
        datamodule = SyntheticImages(image_size=image_size, batch_size=8 if smoke else 512, seed=0)
    if smoke and backend == "compiled":  # the torch.func code without torch.compile (minutes on a CPU)
        model.student.compiled = CompiledUnroll(model.student, compiled=False)
    return model, datamodule


def fit(model, datamodule, device: str, precision: str, iterations: int, callbacks=()) -> None:
    trainer(iterations, list(callbacks), accelerator=device, precision=precision).fit(model, datamodule)


def measure(model, datamodule, device: str, precision: str, iterations: int, warmup: int) -> dict:
    """First iteration (compilation included), ``warmup - 1`` more, then ``iterations`` timed."""
    watch = Stopwatch()
    start = time.perf_counter()
    fit(model, datamodule, device, precision, 1)
    first = time.perf_counter() - start
    if warmup > 1:
        fit(model, datamodule, device, precision, warmup - 1)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    fit(model, datamodule, device, precision, iterations, [IterationTimer(watch)])
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {"iteration": summary(watch.times["iteration"]), "first_iteration_s": first, "peak_mib": peak}


def entries(device: str, smoke: bool) -> list[tuple[str, str, str, str]]:
    """(data, precision, method, backend), the CIFAR-10 float32 ones first (the projection);
    ``smoke``: each data set in one precision (the code paths are the same)."""
    bf16 = device == "cpu" or torch.cuda.is_bf16_supported()
    order = [("cifar10", "32-true"), ("ring", "32-true")] + [("cifar10", "bf16-mixed"), ("ring", "bf16-mixed")] * bf16
    order = order[::3] if smoke else order
    out = [(data, precision, method, backend) for data, precision in order for method, backend in METHODS]
    return out + [("ring", "32-true", "LBT-GAN", "cudagraphs")] * (device == "cuda")


def run_entry(entry: tuple, args) -> dict:
    data, precision, method, backend = entry
    torch.manual_seed(0)
    if backend != "eager" and not args.smoke:
        torch._dynamo.reset()  # a fresh trace per model, under the recompile limit (Inductor's disk cache stays)
    model, datamodule = make(data, method, "eager" if backend == "cudagraphs" else backend, args.smoke)
    if backend == "cudagraphs":
        model.student.compiled = CompiledUnroll(model.student, mode="reduce-overhead")
    try:
        return measure(model, datamodule, args.device, precision, args.iterations, args.warmup)
    except Exception as error:  # noqa: BLE001 - the check reports every failure and goes on
        if backend != "cudagraphs":
            raise
        return {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"}
    finally:
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()


def add_ratios(rows: list[dict]) -> None:
    """``x_gan``: median ms over GAN's (same data and precision); the 300k projection in hours."""
    median = {
        (r["data"], r["precision"], r["method"], r["backend"]): r["iteration"]["median_ms"]
        for r in rows
        if "iteration" in r
    }
    for row in rows:
        gan = median.get((row["data"], row["precision"], "GAN", "eager"))
        if "iteration" not in row or gan is None:
            continue
        row["x_gan"] = row["iteration"]["median_ms"] / gan
        if row["data"] == "cifar10" and row["method"] == "LBT-GAN":
            ms = PAPER_WARMUP * gan + (PAPER_ITERATIONS - PAPER_WARMUP) * row["iteration"]["median_ms"]
            row["paper_run_hours"] = ms / 1e3 / 3600


COLUMNS = [  # header, width, format, getter
    ("data", 7, "", lambda r: r["data"]),
    ("method", 7, "", lambda r: r["method"]),
    ("backend", 10, "", lambda r: r["backend"]),
    ("precision", 10, "", lambda r: r["precision"]),
    ("median ms", 9, ".1f", lambda r: r["iteration"]["median_ms"]),
    ("IQR ms", 13, "", lambda r: f"{r['iteration']['q1_ms']:.1f}-{r['iteration']['q3_ms']:.1f}"),
    ("x GAN", 6, ".2f", lambda r: r["x_gan"]),
    ("peak MiB", 8, ".0f", lambda r: r["peak_mib"]),
    ("1st it s", 8, ".1f", lambda r: r["first_iteration_s"]),
    ("300k h", 6, ".1f", lambda r: r["paper_run_hours"]),
    ("status", 0, "", lambda r: r.get("error") or r.get("skipped") or "ok"),
]


def cell(row: dict, width: int, fmt: str, getter) -> str:
    try:
        value = getter(row)
    except KeyError:
        value = None
    if value is None:
        value, fmt = "", ""
    return format(format(value, fmt), f">{width}" if fmt else f"<{width}")


def print_table(report: dict) -> None:
    tests = report["tests"]
    print(
        f"device tests ({report['device']}): {tests['summary']} [{tests['seconds']:.0f} s, exit {tests['returncode']}]"
    )
    head = " ".join(format(h, f"<{w}" if not f else f">{w}") for h, w, f, _ in COLUMNS)
    print(head)
    print("-" * len(head))
    for row in report["rows"]:
        print(" ".join(cell(row, w, f, g) for _, w, f, g in COLUMNS).rstrip())
    print(f"300k h: {PAPER_ITERATIONS:,} CIFAR-10 iterations ({PAPER_WARMUP:,} GAN warm-up), training only")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny networks and batches, one test: seconds")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per entry")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first (compilation included)")
    # 360 s: the last entry started (a cold Inductor compile at most) still ends within 8 minutes
    parser.add_argument("--budget-s", type=float, default=360, help="start no entry after this many seconds")
    parser.add_argument("--out", default=str(RESULTS / "gpu_check.json"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu")
    if args.smoke:
        args.iterations, args.warmup = 1, 1
    start = time.perf_counter()
    report = {"machine": machine(), "device": args.device, "settings": vars(args)}
    report["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    report["tests"] = run_tests(args.device, args.smoke)
    rows = []
    for entry in entries(args.device, args.smoke):
        row = dict(zip(("data", "precision", "method", "backend"), entry))
        if time.perf_counter() - start > args.budget_s:
            row["skipped"] = f"skipped: past --budget-s {args.budget_s:.0f}"
        else:
            row |= run_entry(entry, args)
        rows.append(row)
    add_ratios(rows)
    report |= {"rows": rows, "seconds": time.perf_counter() - start}
    print_table(report)
    write_report(report, args.out)
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
