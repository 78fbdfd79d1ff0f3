"""Per-iteration time and memory of GAN, Unrolled GAN, LBT and LBT-GAN on the ring, with floors.

Usage: ``make bench`` or ``python benchmarks/speed.py [--iterations 20] [--rounds 3] [--ks 1 2 5 10]
[--backends eager compiled]``. Every method is built from its shipped config
(``experiments/ring/<method>.yaml``: the same generator, 2x128 tanh networks and batch 512) and
trained by Lightning in this one process, round-robin, so all ratios come from the same run.
Then, in fresh processes, the compiled backend's first iteration with a cold and with a warm
Inductor cache, and the iteration count after which compiling pays for itself. Prints a table
and writes ``benchmarks/results/speed.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from common import METHODS, RESULTS, Stopwatch, build, machine, machine_line, summary, trainer, write_report
from probes import FlopCount, IterationTimer, PeakMemory, median_time, peak_matmul_flops

# LBT's iteration, split: the estimator's update, the teaching loss (the K-step unroll), the
# generator's step (its backward); the first two with their generator samples.
# name: (whether only the teaching methods have it, the LightningModule method timed)
PARTS = {
    "estimator update": (True, "update_student"),
    "unroll": (True, "teaching_loss"),
    "generator step": (False, "generator_step"),
}


def make(method: str, overrides: list[str], seed: int = 0):
    torch.manual_seed(seed)
    model, data = build("ring", method, overrides)
    watch = Stopwatch()
    for name, (teaching, attr) in PARTS.items():
        if hasattr(model, "student") or not teaching:
            watch.wrap(model, attr, name)
    return {"model": model, "data": data, "watch": watch}


def run(entry: dict, iterations: int, callbacks=()) -> None:
    trainer(iterations, [IterationTimer(entry["watch"]), *callbacks]).fit(entry["model"], entry["data"])


def time_round_robin(entries: dict[str, dict], iterations: int, warmup: int, rounds: int) -> dict[str, dict]:
    """Warm every entry up (compiling where it compiles), then ``rounds`` × ``iterations`` each,
    interleaved so that a busy spell of the machine hits all of them alike."""
    for entry in entries.values():
        start = time.perf_counter()
        run(entry, 1)
        entry["first_iteration_s"] = time.perf_counter() - start
        run(entry, max(warmup - 1, 1))
        entry["watch"].reset()
    for _ in range(rounds):
        for entry in entries.values():
            run(entry, iterations)
    out = {}
    for label, entry in entries.items():
        times = entry["watch"].times
        out[label] = {"iteration": summary(times["iteration"]), "first_iteration_s": entry["first_iteration_s"]}
        out[label]["parts"] = {k: summary(v) for k, v in times.items() if k != "iteration"}
        backend = getattr(getattr(entry["model"], "student", None), "compiled", None)
        if getattr(backend, "compile_seconds", None):
            out[label]["compile_s"] = dict(backend.compile_seconds)
    return out


def pass_times(batch: int) -> dict[str, float]:
    """Seconds of the floor's unit passes with the shipped networks: one estimator forward+backward,
    one generator sample (z drawn, no graph), one generator forward+backward."""
    torch.manual_seed(0)
    model, _ = build("ring", "lbt")
    estimator, generator = model.estimator, model.generator
    x = torch.randn(batch, 2)

    def estimator_pass():
        estimator.zero_grad()
        estimator(x).mean().backward()

    def generator_pass():
        generator.zero_grad()
        generator(model.noise(batch)).sum().backward()

    return {
        "estimator_fwd_bwd_s": median_time(estimator_pass),
        "generator_sample_s": median_time(lambda: model.sample(batch)),
        "generator_fwd_bwd_s": median_time(generator_pass),
    }


def lbt_floor(units: dict[str, float], k: int, n_est: int) -> dict[str, float]:
    """The pass-count floor of one LBT iteration: n_est·K first-order estimator passes (update),
    K double-backward passes counted as 3 each (unroll and its backward), 1 pass for the loss on
    real data; n_est·K generator samples and K generator forward+backward passes."""
    passes = n_est * k + 3 * k + 1
    seconds = passes * units["estimator_fwd_bwd_s"]
    seconds += n_est * k * units["generator_sample_s"] + k * units["generator_fwd_bwd_s"]
    return {"estimator_passes": passes, "floor_ms": 1e3 * seconds}


def memory_probe(k: int, backend: str) -> float:
    """MiB of peak memory of one LBT iteration (after two that warm up and compile)."""
    overrides = [f"--model.init_args.unroll_steps={k}", f"--model.init_args.unroll_backend={backend}"]
    entry, memory = make("lbt", overrides), PeakMemory()
    run(entry, 2)
    run(entry, 1, [memory])
    return memory.peak / 2**20


def memory_in_subprocess(k: int, backend: str, threads: int | None) -> float:
    """:func:`memory_probe` in a fresh process whose malloc returns every tensor's memory on free."""
    command = [sys.executable, __file__, "--memory-probe", "--ks", str(k), "--backends", backend]
    command += ["--threads", str(threads)] if threads else []
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def first_iteration_probe(method: str, backend: str) -> dict:
    """Seconds of the first and the median of the next 5 iterations (compilation is in the first)."""
    entry = make(method, [f"--model.init_args.unroll_backend={backend}"])
    start = time.perf_counter()
    run(entry, 1)
    first = time.perf_counter() - start
    entry["watch"].reset()
    run(entry, 5)
    return {"first_s": first, "next_median_s": summary(entry["watch"].times["iteration"])["median_ms"] / 1e3}


def compile_costs(method: str, threads: int | None) -> dict:
    """The compiled backend's first iteration in fresh processes: with an empty Inductor cache
    (``cold``, a new TORCHINDUCTOR_CACHE_DIR) and again with the cache that run filled (``warm``);
    the eager backend's first iteration alike. Seconds beyond the next iterations' median."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, backend in (("cold", "compiled"), ("warm", "compiled"), ("eager", "eager")):
            command = [sys.executable, __file__, "--first-iteration-probe", method, backend]
            command += ["--threads", str(threads)] if threads else []
            env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache}
            text = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            probe = json.loads(text.strip().splitlines()[-1])
            out[label] = probe | {"extra_s": probe["first_s"] - probe["next_median_s"]}
    return out


def break_even(costs: dict, eager_ms: float, compiled_ms: float) -> dict[str, float]:
    """Iterations after which compiling has paid for itself, cold and warm cache."""
    saving_s = (eager_ms - compiled_ms) / 1e3
    extra = {k: costs[k]["extra_s"] - costs["eager"]["extra_s"] for k in ("cold", "warm")}
    return {k: (v / saving_s if saving_s > 0 else float("inf")) for k, v in extra.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per entry per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (compilation included)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds over all entries")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10], help="LBT unroll steps K to sweep")
    parser.add_argument("--backends", nargs="+", default=["eager", "compiled"], help="LBT unroll backends")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    parser.add_argument("--out", default=str(RESULTS / "speed.json"))
    parser.add_argument("--no-compile-costs", action="store_true", help="skip the cold/warm compile measurement")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-iteration-probe", nargs=2, metavar=("METHOD", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(memory_probe(args.ks[0], args.backends[0]))
        return {}
    if args.first_iteration_probe:
        print(json.dumps(first_iteration_probe(*args.first_iteration_probe)))
        return {}

    info = machine()
    print(machine_line(info))
    entries = {}
    for label, method in METHODS.items():
        for backend in args.backends if "LBT" in label else ["eager"]:
            ks = args.ks if label == "LBT" else [5]
            for k in ks:
                overrides = [f"--model.init_args.unroll_backend={backend}"] if "LBT" in label else []
                if label == "LBT":
                    overrides.append(f"--model.init_args.unroll_steps={k}")
                entries[(label, backend, k)] = make(method, overrides)
    print(f"timing {len(entries)} entries: {args.rounds} rounds x {args.iterations} iterations, round-robin")
    results = time_round_robin(entries, args.iterations, args.warmup, args.rounds)

    units, peak = pass_times(512), peak_matmul_flops()
    gan = results[("GAN", "eager", 5)]["iteration"]["median_ms"]
    rows = []
    for (label, backend, k), entry in entries.items():
        row = {"method": label, "backend": backend, "K": k, **results[(label, backend, k)]}
        row["ratio_to_gan"] = row["iteration"]["median_ms"] / gan
        if backend == "eager":
            flops = FlopCount()
            run(entry, 1, [flops])
            row["gflop"] = flops.flops / 1e9
        if label == "LBT":
            row["peak_memory_mb"] = memory_in_subprocess(k, backend, args.threads)
            row |= lbt_floor(units, k, entry["model"].student.estimator_steps)
            row["measured_over_floor"] = row["iteration"]["median_ms"] / row["floor_ms"]
        rows.append(row)
    gflop = {(r["method"], r["K"]): r["gflop"] for r in rows if "gflop" in r}
    for row in rows:
        if (row["method"], row["K"]) in gflop:
            row["flop_floor_ms"] = 1e3 * gflop[(row["method"], row["K"])] * 1e9 / peak
            row["measured_over_flop_floor"] = row["iteration"]["median_ms"] / row["flop_floor_ms"]

    report = {"machine": info, "settings": vars(args), "peak_matmul_gflops": peak / 1e9, "units": units, "rows": rows}
    if "compiled" in args.backends and "eager" in args.backends and not args.no_compile_costs:
        report["compile"] = {}
        for label in ("LBT", "LBT-GAN"):
            median = {b: results[(label, b, 5)]["iteration"]["median_ms"] for b in ("eager", "compiled")}
            costs = compile_costs(METHODS[label], args.threads)
            report["compile"][label] = {"costs": costs, "break_even_iterations": break_even(costs, *median.values())}
    report["machine"]["load_average_after"] = machine().get("load_average_1_5_15min")
    print_table(report)
    write_report(report, args.out)
    print(f"wrote {args.out}")
    return report


COLUMNS = [  # header, width, format, getter
    ("method", 13, "", lambda r: r["method"]),
    ("backend", 9, "", lambda r: r["backend"]),
    ("K", 2, "d", lambda r: r["K"]),
    ("median ms", 9, ".1f", lambda r: r["iteration"]["median_ms"]),
    ("IQR ms", 13, "", lambda r: f"{r['iteration']['q1_ms']:.1f}-{r['iteration']['q3_ms']:.1f}"),
    ("x GAN", 6, ".2f", lambda r: r["ratio_to_gan"]),
    ("est.upd", 7, ".1f", lambda r: r["parts"]["estimator update"]["median_ms"]),
    ("unroll", 7, ".1f", lambda r: r["parts"]["unroll"]["median_ms"]),
    ("G step", 7, ".1f", lambda r: r["parts"]["generator step"]["median_ms"]),
    ("floor", 6, ".1f", lambda r: r["floor_ms"]),
    ("/floor", 6, ".2f", lambda r: r["measured_over_floor"]),
    ("FLOPfl", 6, ".1f", lambda r: r["flop_floor_ms"]),
    ("/FLOPfl", 7, ".2f", lambda r: r["measured_over_flop_floor"]),
    ("GFLOP", 5, ".2f", lambda r: r["gflop"]),
    ("peak MB", 7, ".1f", lambda r: r["peak_memory_mb"]),
    ("1st it s", 8, ".1f", lambda r: r["first_iteration_s"]),
]


def cell(row: dict, width: int, fmt: str, getter) -> str:
    try:
        value = getter(row)
    except KeyError:
        value, fmt = "", ""
    return format(format(value, fmt), f">{width}" if fmt else f"<{width}")


def print_table(report: dict) -> None:
    head = " ".join(format(h, f"<{w}" if not f else f">{w}") for h, w, f, _ in COLUMNS)
    print(head)
    print("-" * len(head))
    for row in report["rows"]:
        print(" ".join(cell(row, w, f, g) for _, w, f, g in COLUMNS))
    units = ", ".join(f"{k.removesuffix('_s')} {1e3 * v:.2f}" for k, v in report["units"].items())
    print(f"peak matmul {report['peak_matmul_gflops']:.0f} GFLOP/s; unit passes (ms): {units}")
    for label, c in report.get("compile", {}).items():
        costs, even = c["costs"], c["break_even_iterations"]
        print(
            f"{label} K=5 first iteration beyond the next ones: compiled {costs['cold']['extra_s']:.1f} s with a cold "
            f"Inductor cache, {costs['warm']['extra_s']:.1f} s warm, eager {costs['eager']['extra_s']:.2f} s; "
            f"compiling pays off after {even['cold']:.0f} iterations (cold) / {even['warm']:.0f} (warm)"
        )
    print(
        "floor: n_est*K + 3K + 1 estimator fwd+bwd passes + n_est*K generator samples + K generator fwd+bwd "
        "(measured unit passes); FLOPfl: counted matmul FLOPs / peak matmul throughput"
    )


if __name__ == "__main__":
    main()
