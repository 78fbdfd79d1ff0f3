"""The main job (``make demo``): GAN, LBT-GAN and LBT on the paper's ring under one CPU-time budget.

Usage: ``python -m lbt_lightning.programs.demo [--seed 12345] [--budget 60] [--jobs 2] [--out demo_out]
[--methods GAN LBT-GAN LBT] [extra CLI arguments for every run]``.

Every method trains its fast ring config (``experiments/ring/{gan,lbt_gan,lbt}_fast.yaml``: one
generator and discriminator for GAN and LBT-GAN) in its own process on one torch thread for
``--budget`` seconds of training CPU time, evaluated on a fixed time grid (``--evaluations``
points) with both mode rules. Prints a progress line per evaluation and one table, writes
``<out>/demo.png`` (final samples and the coverage curves) and ``<out>/results.{json,md}``; each
run's logs and checkpoints are in ``<out>/<method>/``.
"""

import argparse
import json
import logging
import multiprocessing
import sys
from pathlib import Path

import torch

from lbt_lightning.callbacks.budget import summarise as summarise_curve

# The fast ring configs of docs/time_to_quality.md: one generator and discriminator for GAN and LBT-GAN.
METHODS = {"GAN": "ring/gan_fast.yaml", "LBT-GAN": "ring/lbt_gan_fast.yaml", "LBT": "ring/lbt_fast.yaml"}


def train(task: tuple) -> dict:
    """Fit one method through the CLI in this process; return its curve and final samples."""
    from lbt_lightning.lightning.cli import main as cli_main

    name, experiments, out, seed, budget, evaluations, extra = task
    torch.set_num_threads(1)
    sys.argv = sys.argv[:1]  # the arguments go to the CLI below; LightningCLI warns when it sees both
    for logger in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # the progress lines suffice
        logging.getLogger(logger).setLevel(logging.WARNING)
    cli = cli_main(
        [
            "fit",
            "--config", str(experiments / "trainer.yaml"),
            "--config", str(experiments / METHODS[name]),
            "--trainer.max_steps=1000000",  # an upper bound: the CPU-time budget stops the run
            f"--seed_everything={seed}",
            f"--trainer.logger.init_args.save_dir={out}",
            f"--trainer.logger.init_args.name={name.lower()}",
            "--trainer.enable_progress_bar=false",
            "--trainer.callbacks+=lbt_lightning.callbacks.CoverageBudget",
            f"--trainer.callbacks.init_args.budget_s={budget}",
            f"--trainer.callbacks.init_args.evaluations={evaluations}",
            f"--trainer.callbacks.init_args.name={name}",
            *(["--model.init_args.unroll_backend=eager"] if name != "GAN" else []),  # 60 s cannot amortise a compile
            *extra,
        ]
    )  # fmt: skip
    monitor = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "CoverageBudget"][-1]
    return {
        "method": name,
        "seed": seed,
        "num_modes": len(cli.datamodule.centers),
        "wall_s": monitor.wall_s(),
        "curve": monitor.curve,
        "samples": monitor.samples.tolist(),
        "centers": cli.datamodule.centers.tolist(),
    }


def summarise(result: dict, settle_s: float) -> dict:
    """:func:`~lbt_lightning.callbacks.budget.summarise` of one method's run."""
    return summarise_curve(result["curve"], result["num_modes"], settle_s)


def at_iteration(result: dict, iteration: int) -> dict:
    """The evaluation of ``result`` whose iteration is nearest to ``iteration``."""
    return min(result["curve"], key=lambda p: abs(p["iteration"] - iteration))


def goals(results: list[dict], settle_s: float) -> dict[str, bool]:
    """The demo's claims for one seed: after ``settle_s``, the GAN misses a mode under the PacGAN
    rule or unbalances them (KL >= 0.1) at some evaluation; LBT-GAN covers every mode at every
    evaluation and ends with >= 80% HQ."""
    by_name = {r["method"]: r | summarise(r, settle_s) for r in results}
    gan, lbt_gan = by_name.get("GAN"), by_name.get("LBT-GAN")
    out = {}
    if gan is not None:
        out["gan_drops_or_unbalances"] = gan["min_modes_pacgan"] < gan["num_modes"] or gan["max_kl"] >= 0.1
    if lbt_gan is not None:
        out["lbt_gan_covers_all"] = lbt_gan["min_modes_pacgan"] == lbt_gan["num_modes"]
        out["lbt_gan_hq_80"] = lbt_gan["hq"] >= 0.8
    return out


def table(results: list[dict], settle_s: float) -> str:
    lines = [
        "| method | iterations | CPU s | wall s | modes (VEEGAN rule) | modes (PacGAN rule) "
        f"| lowest PacGAN modes after {settle_s:.0f} s | % HQ | KL | highest KL after {settle_s:.0f} s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, m = summarise(r, settle_s), r["num_modes"]
        lines.append(
            f"| {r['method']} | {s['iteration']} | {s['cpu_s']:.0f} | {r['wall_s']:.0f} | {s['modes_veegan']}/{m} "
            f"| {s['modes_pacgan']}/{m} | {s['min_modes_pacgan']}/{m} | {100 * s['hq']:.1f} | {s['kl']:.3f} "
            f"| {s['max_kl']:.3f} |"
        )
    by_name = {r["method"]: r for r in results}
    if "GAN" in by_name and "LBT-GAN" in by_name:
        n = summarise(by_name["LBT-GAN"], settle_s)["iteration"]
        p, m = at_iteration(by_name["GAN"], n), by_name["GAN"]["num_modes"]
        lines.append(
            f"| GAN at LBT-GAN's iteration count (nearest evaluation) | {p['iteration']} | {p['cpu_s']:.0f} | "
            f"| {p['modes_veegan']}/{m} | {p['modes_pacgan']}/{m} | | {100 * p['hq']:.1f} | {p['kl']:.3f} | |"
        )
    return "\n".join(lines)


def figure(results: list[dict], path: Path, settle_s: float) -> None:
    """Top: each method's final samples. Bottom: PacGAN-rule modes and % HQ against CPU time."""
    from matplotlib.figure import Figure

    from lbt_lightning.callbacks.sample_plots import scatter_figure

    n = len(results)
    fig = Figure(figsize=(4.2 * max(n, 2), 8.2))
    grid = fig.add_gridspec(2, max(n, 2) * 2)
    colors = {"GAN": "tab:gray", "LBT-GAN": "tab:green", "LBT": "tab:blue"}
    for i, r in enumerate(results):
        s, m = summarise(r, settle_s), r["num_modes"]
        title = f"{r['method']}: {s['modes_pacgan']}/{m} modes, {100 * s['hq']:.0f}% HQ"
        title += f"\n(lowest after {settle_s:.0f} s: {s['min_modes_pacgan']}/{m})"
        ax = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        scatter_figure(torch.tensor(r["samples"]), torch.tensor(r["centers"]), title=title, ax=ax)
    half = max(n, 2)
    ax_modes, ax_hq = fig.add_subplot(grid[1, :half]), fig.add_subplot(grid[1, half:])
    for r in results:
        t = [p["cpu_s"] for p in r["curve"]]
        style = {"color": colors.get(r["method"]), "marker": "o", "markersize": 3, "label": r["method"]}
        ax_modes.plot(t, [p["modes_pacgan"] for p in r["curve"]], **style)
        ax_hq.plot(t, [100 * p["hq"] for p in r["curve"]], **style)
    ax_modes.set(xlabel="training CPU seconds", ylabel="modes with >= 20 HQ samples (PacGAN rule)")
    ax_hq.set(xlabel="training CPU seconds", ylabel="% high-quality samples (within 3σ)")
    for ax in (ax_modes, ax_hq):
        ax.axvline(settle_s, color="k", lw=0.5, ls=":")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=Path, default=Path("experiments"))
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=12345, help="seed_everything of every run")
    parser.add_argument("--budget", type=float, default=60.0, help="training CPU seconds per method")
    parser.add_argument("--evaluations", type=int, default=30, help="evaluations per method, evenly in CPU time")
    parser.add_argument("--settle", type=float, default=None, help="CPU s before the lowest/highest columns count "
                        "(default: 10%% of the budget)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="methods trained at once (one process each)")
    args, extra = parser.parse_known_args(argv)
    settle_s = 0.1 * args.budget if args.settle is None else args.settle
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [(m, args.experiments, args.out, args.seed, args.budget, args.evaluations, extra) for m in args.methods]
    print(f"demo: {', '.join(args.methods)} on the ring, {args.budget:.0f} CPU s each, seed {args.seed}, "
          f"{args.jobs} at a time", flush=True)  # fmt: skip
    # The package's function, not __main__'s: `python -m lbt_lightning.programs.demo` would pickle the latter.
    from lbt_lightning.programs.demo import train as train_one

    if args.jobs == 1:
        results = [train_one(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(tasks))) as pool:
            results = pool.map(train_one, tasks, chunksize=1)
    text = table(results, settle_s)
    print("\n" + text)
    figure(results, args.out / "demo.png", settle_s)
    summary = [
        {k: v for k, v in r.items() if k not in ("samples", "centers")} | {"summary": summarise(r, settle_s)}
        for r in results
    ]
    payload = {"seed": args.seed, "budget_s": args.budget, "settle_s": settle_s, "goals": goals(results, settle_s)}
    (args.out / "results.json").write_text(json.dumps(payload | {"runs": summary}, indent=1))
    (args.out / "results.md").write_text(text + "\n")
    print(f"\ngoals: {payload['goals']}\nwrote {args.out / 'demo.png'}, {args.out / 'results.json'}")
    return results


if __name__ == "__main__":
    run()
