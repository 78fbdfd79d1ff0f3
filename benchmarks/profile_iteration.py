"""Where the time of an LBT and an LBT-GAN iteration goes, eager and compiled.

Usage: ``make profile`` or ``python benchmarks/profile_iteration.py [--iterations 20]
[--methods LBT LBT-GAN] [--backends eager compiled] [--threads 2]``. The ring and the shipped
configs (``experiments/ring/lbt.yaml``, ``lbt_gan.yaml``: batch 512, K 5, n_est 2, the paper's
networks). For each (method, backend), after a warm-up that compiles where it compiles:

1. ms per iteration under Lightning (``Trainer.fit``), and the same step functions in a bare
   Python loop with plain optimizers: the difference is Lightning's per-iteration cost;
   ``self.log`` calls are timed apart (``logging``).
2. ``torch.profiler`` over the same number of iterations: self CPU time per iteration of matmuls,
   random number generation, the compiled graphs (Inductor's fused kernels; with the shipped
   ``cpp_wrapper`` on CPU also the graphs' matmuls, which the profiler then does not see apart,
   hence the extra backend "compiled, Python wrapper"), other ATen ops (elementwise, reductions,
   copies), the autograd engine's nodes, torch.compile's runtime (guards, wrappers), the
   generator's and discriminator's optimizers; ``rest`` is the profiled wall time outside any op
   (Python, dispatch, Lightning's hooks).

Prints a table and writes ``benchmarks/results/profile.json``.
"""

import argparse
import time

import pytorch_lightning as pl
import torch
from common import RESULTS, Stopwatch, build, machine, machine_line, summary, trainer, write_report
from probes import IterationTimer
from torch.profiler import ProfilerActivity, profile

from lbt_lightning.methods.gan import d_loss, g_loss
from lbt_lightning.unroll.compiled import CompiledUnroll

CONFIGS = {"LBT": "lbt", "LBT-GAN": "lbt_gan"}
PYTHON_WRAPPER = "compiled, Python wrapper"
BACKENDS = ["eager", "compiled", PYTHON_WRAPPER]
CATEGORIES = {  # profiler event name -> category, first match wins
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "mkldnn"),
    "random": ("aten::normal_", "aten::uniform_", "aten::bernoulli_", "aten::random_", "aten::randn"),
    "compiled graphs": ("## Call CompiledFxGraph",),
    "compile runtime": ("TorchDynamo", "Torch-Compiled Region", "AOTDispatcher", "CompiledFunction"),
    "optimizers": ("Optimizer.",),
    "autograd engine": ("autograd::", "torch::autograd"),
}


def category(name: str) -> str:
    for label, prefixes in CATEGORIES.items():
        if name.startswith(prefixes):
            return label
    if name.endswith(("Backward0", "Backward1")) or name == "_TeachingLoss":
        return "autograd engine"
    return "other ops" if name.startswith("aten::") else "other events"


class Profile(pl.Callback):
    """torch.profiler over every iteration of the fit; self time per category and wall time."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:
            self.wall = time.perf_counter() - self.start
            self.profiler.__exit__(None, None, None)


def categorise(callback: Profile, iterations: int) -> dict[str, float]:
    """ms per iteration by category; ``rest``: profiled wall time outside any op."""
    out = dict.fromkeys([*CATEGORIES, "other ops", "other events"], 0.0)
    for event in callback.profiler.key_averages():
        out[category(event.key)] += event.self_cpu_time_total / 1e3 / iterations
    out["profiled wall"] = 1e3 * callback.wall / iterations
    out["rest"] = out["profiled wall"] - sum(v for k, v in out.items() if k != "profiled wall")
    return out


def bare_loop(model, data, iterations: int) -> list[float]:
    """Seconds per iteration of the method's steps without Lightning: the estimator update, the
    discriminator step (LBT-GAN), the generator's loss, backward, clip and step, plain optimizers."""
    optimizers = model.configure_optimizers()
    g_opt, d_opt = optimizers if isinstance(optimizers, list) else (optimizers, None)
    batches = iter(data.train_dataloader())
    times = []
    for _ in range(iterations):
        real = next(batches)
        start = time.perf_counter()
        n = real.shape[0]
        model.update_student(n)
        loss = 0.0
        if d_opt is not None:  # LBTGAN.training_step's order: D step, GAN loss, teaching loss
            d_opt.zero_grad()
            d_loss(model.discriminator(real), model.discriminator(model.sample(n))).backward()
            d_opt.step()
            loss = model.gan_weight * g_loss(model.discriminator(model.sample(n, grad=True)))
        loss = loss + model.teaching_loss(real)
        g_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.generator.parameters(), model.clip_grad_norm)
        g_opt.step()
        times.append(time.perf_counter() - start)
    return times


def measure(method: str, backend: str, iterations: int, warmup: int) -> dict:
    torch.manual_seed(0)
    unroll = "compiled" if backend.startswith("compiled") else backend
    model, data = build("ring", CONFIGS[method], [f"--model.init_args.unroll_backend={unroll}"])
    if backend == PYTHON_WRAPPER:  # the shipped compile without cpp_wrapper: its matmuls show as ATen ops
        model.student.compiled = CompiledUnroll(model.student, cpp_wrapper=False)
    watch = Stopwatch()
    for attr, name in (("training_step", "training_step"), ("log", "logging")):  # log_dict calls log
        watch.wrap(model, attr, name)
    start = time.perf_counter()
    trainer(1, []).fit(model, data)
    first = time.perf_counter() - start
    trainer(warmup, []).fit(model, data)
    watch.reset()
    trainer(iterations, [IterationTimer(watch)]).fit(model, data)
    times, watch.times = watch.times, {}
    profiled = Profile()
    trainer(iterations, [profiled]).fit(model, data)
    data.setup("fit")
    bare = bare_loop(model, data, iterations)
    row = {"method": method, "backend": backend, "first_iteration_s": first}
    row["lightning"] = summary(times["iteration"])
    row["training_step"] = summary(times["training_step"])
    row["bare"] = summary(bare)
    # per call: the median (a fit's first call sets up Lightning's result collection), times calls per iteration
    row["logging_ms"] = summary(times["logging"])["median_ms"] * len(times["logging"]) / iterations
    row["lightning_overhead_ms"] = row["lightning"]["median_ms"] - row["bare"]["median_ms"]
    row["profile_ms"] = categorise(profiled, iterations)
    row["compile_s"] = dict(getattr(model.student.compiled, "compile_seconds", {}))
    return row


COLUMNS = [  # header, getter
    ("method", lambda r: r["method"]),
    ("backend", lambda r: r["backend"]),
    ("Lightning", lambda r: f"{r['lightning']['median_ms']:.1f}"),
    ("bare loop", lambda r: f"{r['bare']['median_ms']:.1f}"),
    ("Lightning - bare", lambda r: f"{r['lightning_overhead_ms']:.1f}"),
    ("logging", lambda r: f"{r['logging_ms']:.2f}"),
    *((k, lambda r, k=k: f"{r['profile_ms'][k]:.1f}") for k in [*CATEGORIES, "other ops", "other events", "rest"]),
    ("profiled", lambda r: f"{r['profile_ms']['profiled wall']:.1f}"),
]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(get(r) for _, get in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations after the first")
    parser.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    parser.add_argument("--out", default=str(RESULTS / "profile.json"))
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    info = machine()
    print(machine_line(info))
    rows = [measure(m, b, args.iterations, args.warmup) for m in args.methods for b in args.backends]
    info["load_average_after"] = machine().get("load_average_1_5_15min")
    print("ms per iteration (median; profiler categories: self time per iteration in a profiled run)")
    print(markdown(rows))
    report = {"machine": info, "settings": vars(args), "rows": rows}
    write_report(report, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
