"""Stacked MNIST at equal CPU time: modes and KL of GAN and LBT-GAN runs against training CPU seconds.

Usage::

    python benchmarks/stacked_mnist.py [--runs gan_cpu@1200 gan_fast_cpu@1200 lbt_gan_cpu,balance=1@1200 ...]
        [--seeds 0 1 2] [--evaluations 8] [--num-samples 26000] [--jobs 2]
        [--classifier runs/smnist_classifier_test8k.pt] [--root ../shared/data/mnist] [--out ...json]
    python benchmarks/stacked_mnist.py --combine a.json b.json ... --out combined.json

Each run trains ``experiments/stacked_mnist/<config>.yaml`` (with ``,arg=value`` model arguments)
in its own process on one torch thread for its CPU-second budget (``@seconds``), on the MNIST
digits under ``--root``, eager unroll, and scores modes and KL (PAPER.md §5.2; the digit
classifier of ``python -m lbt_lightning.programs.classifier``) of samples 0..N-1 of the one
evaluation path at ``--evaluations`` even CPU times (evaluations are not charged). Prints a table
(per run: iterations, CPU s, final modes and KL, lowest modes after the first quarter; across
seeds also the CPU seconds of the first evaluation with ≥ 900 modes); writes the
JSON, a plot (modes and KL against CPU seconds, a line per run and seed) and a grid of the first
64 final samples per run and seed next to it. ``--combine`` trains nothing: it joins the runs of
earlier reports (e.g. one invocation per seed) into one table, one table across seeds and one plot.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from common import RESULTS, build, machine, run_pool, trainer, write_report

from lbt_lightning.callbacks import CoverageBudget
from lbt_lightning.metrics.stacked_mnist import StackedMNISTModes

DEFAULT_RUNS = [
    "gan_cpu@1200",
    "gan_fast_cpu@1200",
    "lbt_gan_cpu@1200",
    "lbt_gan_cpu,balance=1.0@1200",
    "lbt_gan_fast_cpu@1200",
]


class StackedMNISTBudget(CoverageBudget):
    """:class:`~lbt_lightning.callbacks.CoverageBudget` scoring Stacked MNIST modes and KL."""

    def __init__(self, classifier: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.classifier = classifier

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.metric = StackedMNISTModes(self.classifier)

    @torch.no_grad()
    def score(self, pl_module) -> dict:
        self.metric.reset()
        for i, chunk in enumerate(pl_module.sample_chunks(self.num_samples)):
            if i == 0:
                self.samples = chunk[:64].cpu()
            self.metric.update(chunk)
        return {k: float(v) for k, v in self.metric.compute().items()}


def split_run(run: str) -> tuple[str, list[str], float]:
    """``config[,arg=value...]@seconds`` -> (config, model overrides, CPU seconds)."""
    name, _, seconds = run.partition("@")
    config, *knobs = name.split(",")
    return config, [f"--model.init_args.{k}" for k in knobs], float(seconds or 1200)


def one_run(task: tuple) -> dict:
    run, seed, args = task
    torch.set_num_threads(1)
    config, knobs, budget = split_run(run)
    eager = ["--model.init_args.unroll_backend=eager"] if config.startswith("lbt") else []
    overrides = [f"--data.init_args.root={args['root']}", *eager, *knobs, f"--seed_everything={seed}"]
    model, data = build("stacked_mnist", config, overrides)
    callback = StackedMNISTBudget(
        args["classifier"], budget, evaluations=args["evaluations"], num_samples=args["num_samples"]
    )
    start = time.perf_counter()
    trainer(args["max_iterations"], [callback]).fit(model, data)
    curve = callback.curve
    settled = [p for p in curve if p["cpu_s"] >= budget / 4] or curve[-1:]
    result = {"run": run, "config": config, "seed": seed, "budget": budget, "curve": curve}
    result |= {"total_wall_s": time.perf_counter() - start, "samples": callback.samples.tolist()}
    result["summary"] = {
        "iterations": curve[-1]["iteration"],
        "cpu_s": curve[-1]["cpu_s"],
        "modes": curve[-1]["modes"],
        "kl": curve[-1]["kl"],
        "min_modes_after_quarter": min(p["modes"] for p in settled),
    }
    s, quarter = result["summary"], budget / 4
    print(
        f"{run:<32} seed {seed}: it {s['iterations']:>6} cpu {s['cpu_s']:6.0f}s modes {s['modes']:.0f} "
        f"KL {s['kl']:.3f} | lowest modes after {quarter:.0f} s {s['min_modes_after_quarter']:.0f}",
        flush=True,
    )
    return result


def table(runs: list[dict]) -> str:
    lines = [
        "| run | seed | iterations | CPU s | modes | KL | lowest modes after a quarter of the budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["summary"]
        lines.append(
            f"| {label(r['run'])} | {r['seed']} | {s['iterations']} | {s['cpu_s']:.0f} | {s['modes']:.0f} "
            f"| {s['kl']:.3f} | {s['min_modes_after_quarter']:.0f} |"
        )
    return "\n".join(lines)


def tables(runs: list[dict]) -> str:
    """The per-run table and the table across seeds, as printed and stored in the JSON."""
    return table(runs) + "\n\n" + across_seeds(runs)


def across_seeds(runs: list[dict]) -> str:
    """One row per run: its seeds, and modes, KL and iterations per seed (in seed order)."""
    lines = [
        "| run | seeds | modes | KL | iterations | lowest modes after a quarter of the budget | CPU s to 900 modes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["run"] for r in runs):
        rs = sorted((r for r in runs if r["run"] == name), key=lambda r: r["seed"])
        summaries = [per_seed(rs, key, fmt) for key, fmt in (("modes", ".0f"), ("kl", ".3f"), ("iterations", "d"),
                                                              ("min_modes_after_quarter", ".0f"))]  # fmt: skip
        to_900 = " / ".join(cpu_to(r, 900) for r in rs)
        lines.append(
            f"| {label(name)} | {', '.join(str(r['seed']) for r in rs)} | {' | '.join(summaries)} | {to_900} |"
        )
    return "\n".join(lines)


def per_seed(runs: list[dict], key: str, fmt: str) -> str:
    """``summary[key]`` of each run, formatted and joined as ``a / b / c``."""
    return " / ".join(format(r["summary"][key], fmt) for r in runs)


def cpu_to(run: dict, modes: int) -> str:
    """The CPU seconds of the first evaluation at which ``run`` had at least ``modes`` modes ("–": none)."""
    return next((f"{p['cpu_s']:.0f}" for p in run["curve"] if p["modes"] >= modes), "–")


def label(run: str) -> str:
    """A run's name for tables and legends: its config and arguments, shortened."""
    name = run.partition("@")[0]
    for long, short in (
        ("generator_optimizer.init_args.lr", "G lr"),
        ("discriminator_optimizer.init_args.lr", "D lr"),
        ("discriminator.init_args.", "D "),
    ):
        name = name.replace(long, short)
    return name


def plot(runs: list[dict], path: Path) -> None:
    """Modes (left) and KL (right) against CPU seconds, a line per run and seed; and a grid of
    each run's final samples (first seed) beside it."""
    from matplotlib.figure import Figure
    from torchvision.utils import save_image

    names = list(dict.fromkeys(r["run"] for r in runs))
    colors = {name: f"C{i}" for i, name in enumerate(names)}
    fig = Figure(figsize=(11, 4))
    ax_modes, ax_kl = fig.subplots(1, 2)
    seen = set()
    for r in runs:
        t = [p["cpu_s"] for p in r["curve"]]
        legend = None if r["run"] in seen else label(r["run"])
        seen.add(r["run"])
        ax_modes.plot(t, [p["modes"] for p in r["curve"]], "o-", color=colors[r["run"]], label=legend, ms=3)
        ax_kl.plot(t, [p["kl"] for p in r["curve"]], "o-", color=colors[r["run"]], ms=3)
    ax_modes.set(xlabel="training CPU seconds (one thread)", ylabel="modes of 1,000")
    ax_kl.set(xlabel="training CPU seconds (one thread)", ylabel="KL(modes ‖ uniform)")
    ax_modes.legend(fontsize=8)
    for ax in (ax_modes, ax_kl):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    for name in names:
        first = next((r for r in runs if r["run"] == name and "samples" in r), None)
        if first is None:  # --combine: the reports keep no samples
            continue
        stem = name.partition("@")[0].replace(",", "_").replace("=", "")
        save_image(torch.tensor(first["samples"]), path.with_name(f"{path.stem}_{stem}.png"), nrow=8)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="config[,arg=value...]@CPU seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--evaluations", type=int, default=8)
    parser.add_argument("--num-samples", type=int, default=26_000)
    parser.add_argument("--max-iterations", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2, help="single-thread runs in parallel (at most 2 on 2 cores)")
    parser.add_argument("--classifier", default="runs/smnist_classifier_test8k.pt")
    parser.add_argument("--root", default="../shared/data/mnist")
    parser.add_argument("--out", default=str(RESULTS / "stacked_mnist.json"))
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="join earlier reports instead of training")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, Path(args.out))
    for run in args.runs:
        config, _, budget = split_run(run)
        if not (Path(__file__).parents[1] / "experiments/stacked_mnist" / f"{config}.yaml").is_file():
            parser.error(f"--runs: no experiments/stacked_mnist/{config}.yaml")
    if not Path(args.classifier).is_file():
        parser.error(
            f"--classifier: {args.classifier!r} does not exist; make it with python -m lbt_lightning.programs."
            f"classifier --root {args.root} --train-on test --out {args.classifier}"
        )
    settings = vars(args)
    tasks = [(run, seed, settings) for run in args.runs for seed in args.seeds]
    info = machine()
    print(f"{info['date']}: {len(tasks)} runs, {args.jobs} at a time, load {info.get('load_average_1_5_15min')}")
    runs = run_pool(one_run, tasks, args.jobs, info)
    text = tables(runs)
    print("\n" + text)
    plot(runs, Path(args.out).with_suffix(".png"))
    for run in runs:  # the final samples are in the grids; 64 images a run would be most of the JSON
        run.pop("samples")
    report = {"machine": info, "settings": settings, "table": text, "runs": runs}
    write_report(report, args.out)
    print(f"wrote {args.out}, its .png and a sample grid per run in {info['total_wall_s'] / 60:.1f} min")
    return report


def combine(paths: list[str], out: Path) -> dict:
    """Join the runs of earlier reports: one table, one table across seeds, one plot, one JSON."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for report in reports for r in report["runs"]]
    text = tables(runs)
    print(text)
    plot(runs, out.with_suffix(".png"))
    sources = [
        {"path": p, "machine": report["machine"], "settings": report["settings"]} for p, report in zip(paths, reports)
    ]
    report = {"sources": sources, "table": text, "runs": runs}
    write_report(report, out)
    print(f"wrote {out} and its .png")
    return report


if __name__ == "__main__":
    main()
