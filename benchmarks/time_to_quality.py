"""Time to quality: CPU seconds until a method's samples cover every mode sharply, per (data, config, seed).

Usage::

    python benchmarks/time_to_quality.py [--suite main|grid25|ring] [--runs ring:gan ring:lbt_gan_fast ...]
        [--seeds 0 1 2] [--budget 300] [--every 100] [--jobs 2] [--set='--model.init_args.gan_weight=1.0 ...']

Each run trains ``experiments/<folder>/<config>.yaml`` (over ``experiments/trainer.yaml``) in one
process on one torch thread and evaluates every ``--every`` iterations on fresh samples (2,500;
100 per mode above 25 modes): modes under the VEEGAN rule (>= 1 high-quality sample, HQ = within
3σ of its nearest mean) and the PacGAN rule (>= 20 HQ samples), % HQ and KL(HQ histogram ‖
uniform). The clock is the process's CPU time spent in training (evaluations excluded), so with
one thread it is the time an idle core needs, whatever else the machine runs. A run stops at
``--budget`` CPU seconds (or the run's own ``@seconds``) or ``--max-iterations``.

Reported per run: CPU seconds (and iterations) until (a) all modes under the PacGAN rule, (b) 80%
and (c) 90% HQ, (d) KL <= 0.05, each the first evaluation that reaches it, or "not reached" with
the best value; the lowest PacGAN mode count after the first ``--settle`` fraction of the run's
CPU budget (default 10%) and the highest KL after it (a GAN that drops modes on its way shows here). Writes
``benchmarks/results/time_to_quality[_<suite>].json`` and ``.png`` (modes and % HQ against CPU
seconds). ``--suite`` picks the default runs, seeds, evaluation period and output (``SUITES``).
"""

import argparse
import shlex
import statistics
import time

import torch
from common import RESULTS, build, machine, run_pool, trainer, write_report

from lbt_lightning.callbacks.budget import GOALS, CoverageBudget, summarise

# data name: (config folder, data overrides)
DATASETS = {
    "ring": ("ring", []),  # PAPER.md §5.1: 8 modes, r 1, σ 0.1
    # VEEGAN/PacGAN grid: 5x5, spacing 2, σ 0.05, at each config's own batch size
    "grid25": ("grid", [f"--data.init_args.{k}" for k in ("num_modes=25", "spacing=2.0", "sigma=0.05")]),
    "grid100": ("grid", []),  # PAPER.md §5.1: 10x10, spacing 0.2, σ 0.01
}
# Named sets of runs, each with its seeds, evaluation period and output (benchmarks/results/):
# - main: the paper configs and the fast ones on the ring (GANs 120 CPU s, LBT methods 150 s) and
#   on the paper's 100-grid (60 s each);
# - grid25: with PacGAN's 2-D networks on the 25-grid, 10 CPU minutes each, the GAN at its best
#   settings, balanced LBT-GAN and LBT with the same estimator, on seeds 4-6, which chose nothing
#   (the settings were chosen on seeds 0-3: docs/time_to_quality.md);
# - ring: the fast GAN against the fast and the balanced LBT-GAN on the ring, on seeds 5-7, which
#   chose nothing.
SUITES = {
    "main": {
        "runs": [
            *(f"ring:{c}@120" for c in ("gan", "gan_fast", "unrolled_gan")),
            *(f"ring:{c}@150" for c in ("lbt", "lbt_fast", "lbt_gan", "lbt_gan_fast")),
            *(f"grid100:{c}@60" for c in ("gan", "unrolled_gan", "lbt", "lbt_gan", "lbt_gan_fast")),
        ],
        "seeds": [0, 1, 2],
        "every": 100,
        "out": "time_to_quality.json",
    },
    "grid25": {
        "runs": [
            "grid25:gan25_fast@600",
            "grid25:lbt_gan25_balanced@600",
            "grid25:lbt25_fast,unroll_lr=1e-3,estimator_lr=3e-3@600",  # the balanced config's estimator
        ],
        "seeds": [4, 5, 6],
        "every": 1000,
        "out": "time_to_quality_grid25.json",
    },
    "ring": {
        "runs": ["ring:gan_fast@120", "ring:lbt_gan_fast@120", "ring:lbt_gan_balanced@120"],
        "seeds": [5, 6, 7],
        "every": 100,
        "out": "time_to_quality_ring.json",
    },
}


def split_run(run: str, default_budget: float) -> tuple[str, float]:
    """``data:config[@CPU s]`` -> (``data:config``, its CPU-second budget)."""
    name, _, budget = run.partition("@")
    return name, float(budget) if budget else default_budget


def one_run(task: tuple) -> dict:
    run, seed, args = task
    torch.set_num_threads(1)
    run, budget = split_run(run, args["budget"])
    data_name, config = run.split(":")
    config, *knobs = config.split(",")  # e.g. lbt_gan25_balanced,balance=3: model arguments of this run
    knobs = [f"--model.init_args.{knob}" for knob in knobs]
    folder, data_overrides = DATASETS[data_name]
    eager = ["--model.init_args.unroll_backend=eager"] if "lbt" in config else []  # minutes cannot amortise a compile
    model, data = build(folder, config, [*data_overrides, *eager, *knobs, *args["set"], f"--seed_everything={seed}"])
    num_modes = len(data.centers)
    callback = CoverageBudget(
        budget, evaluations=None, every_n_iterations=args["every"], num_samples=max(2500, 100 * num_modes)
    )
    start = time.perf_counter()
    trainer(args["max_iterations"], [callback]).fit(model, data)
    result = {"run": run, "data": data_name, "config": config, "seed": seed, "num_modes": num_modes, "budget": budget}
    result |= {"total_wall_s": time.perf_counter() - start, "set": args["set"], "curve": callback.curve}
    result["grad_norms"] = callback.norms
    result["summary"] = summarise(callback.curve, num_modes, args["settle"] * budget, callback.norms)
    f, ratio = result["summary"]["final"], fmt_ratio(result["summary"]["teach_to_gan_median"])
    print(
        f"{run:<24} seed {seed}: it {f['iteration']:>6} cpu {f['cpu_s']:6.1f}s modes {f['modes_veegan']:.0f}/"
        f"{f['modes_pacgan']:.0f} of {num_modes} HQ {100 * f['hq']:5.1f}% KL {f['kl']:.3f} | min PacGAN modes "
        f"{result['summary']['min_modes_pacgan']:.0f} | teach/GAN {ratio} | "
        + " ".join(f"{g}={fmt_hit(result['summary'][g])}" for g in GOALS),
        flush=True,
    )
    return result


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3g}"


def fmt_hit(hit: dict | None) -> str:
    return "-" if hit is None else f"{hit['cpu_s']:.0f}s"


def table(runs: list[dict]) -> str:
    """One row per (data, config): median CPU seconds to each goal over the seeds that reached it."""
    lines = [
        "| data | config | seeds | " + " | ".join(f"CPU s to {g}" for g in GOALS.values())
        + " | min PacGAN modes | final modes (PacGAN) | final % HQ | final KL | iterations | teach/GAN gradient |",
        "|---|---|---|" + "---|" * (len(GOALS) + 6),
    ]  # fmt: skip
    for key in dict.fromkeys(r["run"] for r in runs):
        group = [r for r in runs if r["run"] == key]
        n, cells = len(group), []
        for goal in GOALS:
            hits = [r["summary"][goal]["cpu_s"] for r in group if r["summary"][goal] is not None]
            if not hits:
                best = (
                    f"best {100 * max(r['summary']['best_hq'] for r in group):.0f}%"
                    if goal.startswith("hq")
                    else f"best {min(r['summary']['best_kl'] for r in group):.3f}"
                    if goal == "kl05"
                    else ""
                )
                cells.append(f"not reached {best}".strip())
            else:
                cells.append(f"{statistics.median(hits):.0f} ({len(hits)}/{n})")
        finals = [r["summary"]["final"] for r in group]
        mins = "/".join(f"{r['summary']['min_modes_pacgan']:.0f}" for r in group)
        cells += [
            mins,
            "/".join(f"{f['modes_pacgan']:.0f}" for f in finals) + f" of {group[0]['num_modes']}",
            "/".join(f"{100 * f['hq']:.0f}" for f in finals),
            "/".join(f"{f['kl']:.2f}" for f in finals),
            "/".join(str(f["iteration"]) for f in finals),
            "/".join(fmt_ratio(r["summary"].get("teach_to_gan_median")) for r in group),
        ]
        data, config = key.split(":")
        lines.append(f"| {data} | {config} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path) -> None:
    """Per data set: PacGAN-rule modes (top) and % HQ against CPU seconds, a line per run; below
    them, when a run logged both gradient norms, the teaching/GAN ratio (log scale)."""
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(r["data"] for r in runs))
    configs = list(dict.fromkeys(r["config"] for r in runs))
    colors = {c: f"C{i}" for i, c in enumerate(configs)}

    def ratio_curve(run: dict) -> tuple[list, list]:
        points = [p for p in run.get("grad_norms", []) if p.get("train/grad_norm_gan", 0) > 0]
        points = [p for p in points if "train/grad_norm_teach" in p]
        return [p["cpu_s"] for p in points], [p["train/grad_norm_teach"] / p["train/grad_norm_gan"] for p in points]

    rows = 3 if any(ratio_curve(r)[0] for r in runs) else 2
    fig = Figure(figsize=(5.5 * len(datasets), 3.5 * rows))
    axes = fig.subplots(rows, len(datasets), sharex="col", squeeze=False)
    for col, data in enumerate(datasets):
        seen = set()
        for r in (r for r in runs if r["data"] == data):
            t = [p["cpu_s"] for p in r["curve"]]
            label = None if r["config"] in seen else r["config"]
            seen.add(r["config"])
            style = {"color": colors[r["config"]], "alpha": 0.75, "lw": 1.2}
            axes[0, col].plot(t, [p["modes_pacgan"] for p in r["curve"]], label=label, **style)
            axes[1, col].plot(t, [100 * p["hq"] for p in r["curve"]], **style)
            if rows == 3:
                axes[2, col].plot(*ratio_curve(r), **style)
        axes[0, col].set(title=data, ylabel="modes (PacGAN rule, >= 20 HQ samples)")
        axes[1, col].set(ylabel="% high quality")
        if rows == 3:
            axes[2, col].set(yscale="log", ylabel="‖∇ teaching‖ / ‖∇ λ·GAN‖")
        axes[-1, col].set(xlabel="training CPU seconds (one thread)")
        axes[0, col].legend(fontsize=8)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="main", help="default runs, seeds, --every, --out")
    parser.add_argument(
        "--runs", nargs="+",
        help="data:config[,arg=value...][@CPU s], e.g. ring:gan@120 or grid25:lbt_gan25_balanced,balance=3@600",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--budget", type=float, default=300.0, help="training CPU seconds of a run without @seconds")
    parser.add_argument("--max-iterations", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, help="evaluation period in iterations")
    parser.add_argument(
        "--settle", type=float, default=0.1, help="min modes / max KL count after this fraction of the CPU budget"
    )
    parser.add_argument("--jobs", type=int, default=2, help="single-thread runs in parallel (at most 2 on 2 cores)")
    parser.add_argument("--set", default="", help="CLI overrides for every run: --set='--key=value --key2=value2'")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    for key in ("runs", "seeds", "every"):
        if getattr(args, key) is None:
            setattr(args, key, suite[key])
    args.out = args.out or str(RESULTS / suite["out"])
    if not 0 <= args.settle < 1:
        parser.error(f"--settle: a fraction of the budget in [0, 1), got {args.settle}")
    for run in args.runs:
        name, _, budget = run.partition("@")
        if name.count(":") != 1 or name.split(":")[0] not in DATASETS or (budget and not budget.isdigit()):
            parser.error(f"--runs: {run!r} is not data:config[@seconds] with data one of {sorted(DATASETS)}")

    args.set = shlex.split(args.set)
    settings = vars(args)
    tasks = [(run, seed, settings) for run in args.runs for seed in args.seeds]
    info = machine()
    longest = max(split_run(run, args.budget)[1] for run in args.runs)
    print(f"{info['date']}: {len(tasks)} runs, <= {longest:.0f} CPU s each, {args.jobs} at a time, "
          f"load {info.get('load_average_1_5_15min')}", flush=True)  # fmt: skip
    runs = run_pool(one_run, tasks, args.jobs, info)
    text = table(runs)
    print("\n" + text)
    out = args.out
    write_report({"machine": info, "settings": settings, "table": text, "runs": runs}, out, default=str)
    plot(runs, out.removesuffix(".json") + ".png")
    print(f"wrote {out} and its .png in {info['total_wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
