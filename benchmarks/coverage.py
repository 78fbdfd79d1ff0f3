"""Mode coverage against iterations and training time: GAN, Unrolled GAN, LBT, LBT-GAN on three 2-D mixtures.

Usage: ``python benchmarks/coverage.py [--budget 180] [--seeds 0 1 2] [--jobs 2] [--threads 1]``.
Every run trains one method from its shipped config for ``--budget`` seconds of training time
(CPU time by default; the first iteration, which compiles with ``--backend compiled``, and the
evaluations are not charged: :class:`~lbt_lightning.callbacks.CoverageBudget`), evaluating modes
(VEEGAN rule, >= 1 HQ sample) / % high quality / KL (the VEEGAN protocol, 3σ) on the one evaluation
path ``--evaluations`` times along the way. Writes
``benchmarks/results/coverage.json`` (every evaluation with its iteration, training, wall and CPU
seconds) and ``coverage.png`` next to it (modes and % HQ against training time), and prints a mean ± sd table
at the end of the budget. docs/results.md used ``--budget 60 --backend compiled`` (a reduced
budget on a shared machine); the default budget takes about an hour on a free 2-core machine.
"""

import argparse
import multiprocessing
import statistics
import time

import torch
from common import METHODS, RESULTS, build, machine, trainer, write_report

from lbt_lightning.callbacks import CoverageBudget

# name: (config folder, data overrides, samples per evaluation)
DATASETS = {
    "ring (paper)": ("ring", [], 2500),  # PAPER.md §5.1: 8 modes, r 1, σ 0.1; VEEGAN: 2,500 samples
    "grid-100 (paper)": ("grid", [], 10000),  # PAPER.md §5.1: 10x10, spacing 0.2, σ 0.01
    # VEEGAN/PacGAN grid (PAPER.md §5.1 note): 5x5, spacing 2, σ 0.05, the toy batch of 512
    "grid-25 (VEEGAN)": (
        "grid",
        ["--data.init_args.num_modes=25", "--data.init_args.spacing=2.0", "--data.init_args.sigma=0.05"]
        + ["--data.init_args.batch_size=512"],
        2500,
    ),
}


def one_run(task: tuple) -> dict:
    """Train one (dataset, method, seed) for the budget; returns its curve."""
    dataset, method, seed, args = task
    torch.set_num_threads(args["threads"])
    folder, overrides, num_samples = DATASETS[dataset]
    lbt = METHODS[method].startswith("lbt")
    backend = [f"--model.init_args.unroll_backend={args['backend']}"] if lbt else []
    model, data = build(folder, METHODS[method], [*overrides, *backend, f"--seed_everything={seed}"])
    budget = CoverageBudget(
        args["budget"], evaluations=args["evaluations"], num_samples=num_samples, clock=args["clock"],
        charge_first_iteration=False,
    )  # fmt: skip
    trainer(args["max_iterations"], [budget]).fit(model, data)
    for point in budget.curve:
        point["modes"] = point["modes_veegan"]
    result = {"dataset": dataset, "method": method, "seed": seed, "clock": args["clock"], "curve": budget.curve}
    result["first_iteration_s"] = budget.first_iteration_s
    print(f"{dataset:<17} {method:<13} seed {seed}: {budget.curve[-1]}", flush=True)
    return result


def table(runs: list[dict]) -> list[dict]:
    """Mean ± sd over seeds of the last evaluation of every (dataset, method)."""
    rows = []
    for dataset in DATASETS:
        for method in METHODS:
            finals = [r["curve"][-1] for r in runs if r["dataset"] == dataset and r["method"] == method]
            if not finals:
                continue
            row = {"dataset": dataset, "method": method, "seeds": len(finals)}
            for key in ("modes", "hq", "kl", "iteration", "train_s", "wall_s"):
                values = [f[key] for f in finals]
                row[key] = statistics.mean(values)
                row[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print("| data | method | modes | % HQ | KL | iterations |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['method']} | {r['modes']:.1f} ± {r['modes_sd']:.1f} "
            f"| {100 * r['hq']:.1f} ± {100 * r['hq_sd']:.1f} | {r['kl']:.2f} ± {r['kl_sd']:.2f} "
            f"| {r['iteration']:.0f} |"
        )


def plot(runs: list[dict], path) -> None:
    """Modes (top) and % high quality (bottom) against training time, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(DATASETS), figsize=(5 * len(DATASETS), 7), sharex="col", squeeze=False)
    colors = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue", "tab:green")))
    first_seed = min(r["seed"] for r in runs)
    for col, dataset in enumerate(DATASETS):
        for run in (r for r in runs if r["dataset"] == dataset):
            t = [p["train_s"] for p in run["curve"]]
            style = {"color": colors[run["method"]], "alpha": 0.7, "markersize": 3}
            label = run["method"] if run["seed"] == first_seed else None
            axes[0, col].plot(t, [p["modes"] for p in run["curve"]], "o-", label=label, **style)
            axes[1, col].plot(t, [100 * p["hq"] for p in run["curve"]], "o-", **style)
        axes[0, col].set(title=dataset, ylabel="modes covered")
        axes[1, col].set(xlabel=f"training time (s, {runs[0]['clock']} clock)", ylabel="% high quality")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per run")
    parser.add_argument("--clock", default="cpu", choices=["cpu", "wall"], help="what the budget counts")
    parser.add_argument("--evaluations", type=int, default=8, help="evaluations per run, evenly in time")
    parser.add_argument("--max-iterations", type=int, default=1_000_000, help="iteration cap per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--backend", default="eager", choices=["eager", "compiled"], help="LBT unroll backend")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", default=str(RESULTS / "coverage.json"))
    args = parser.parse_args(argv)

    settings = vars(args)
    tasks = [(d, m, s, settings) for d in args.datasets for m in args.methods for s in args.seeds]
    info = machine()
    load = info.get("load_average_1_5_15min")
    print(f"{info['date']}: {len(tasks)} runs x {args.budget:.0f} s, {args.jobs} at a time, load {load}")
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(one_run, tasks, chunksize=1)
    info["total_wall_s"] = time.perf_counter() - start
    info["load_average_after"] = machine().get("load_average_1_5_15min")
    rows = table(runs)
    print_table(rows)
    write_report({"machine": info, "settings": settings, "table": rows, "runs": runs}, args.out)
    png = args.out.removesuffix(".json") + ".png"
    plot(runs, png)
    print(f"wrote {args.out} and {png} in {info['total_wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
