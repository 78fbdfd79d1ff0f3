"""The main job (``make demo``): GAN, LBT and LBT-GAN on one 2-D benchmark; a table and one PNG.

Usage: ``python -m lbt_lightning.demo [--experiments experiments] [--out demo_out]``.
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lbt_lightning.callbacks import ModeCoverageCallback  # noqa: E402
from lbt_lightning.callbacks.sample_plots import scatter_figure  # noqa: E402
from lbt_lightning.cli import main as cli_main  # noqa: E402

METHODS = {"GAN": "gan.yaml", "LBT": "lbt.yaml", "LBT-GAN": "lbt_gan.yaml"}


def train(name: str, experiments: Path, out: Path, extra: list[str]) -> dict:
    """Fit one method through the CLI; return its final metrics, wall time and samples."""
    start = time.perf_counter()
    cli = cli_main(
        [
            "fit",
            "--config", str(experiments / "trainer.yaml"),
            "--config", str(experiments / "demo" / METHODS[name]),
            f"--trainer.logger.init_args.save_dir={out}",
            f"--trainer.logger.init_args.name={name.lower()}",
            *extra,
        ]
    )  # fmt: skip
    wall = time.perf_counter() - start
    coverage = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ModeCoverageCallback))
    return {
        "method": name,
        "iterations": int(cli.model.iteration),
        "wall_s": wall,
        "modes": coverage.last["val/modes"],
        "num_modes": len(cli.datamodule.centers),
        "hq": coverage.last["val/hq"],
        "kl": coverage.last["val/kl"],
        "samples": cli.model.sample(2500).cpu(),
        "centers": cli.datamodule.centers,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| method | iterations | wall time (s) | s/iteration | modes | % HQ | KL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['iterations']} | {r['wall_s']:.0f} | {r['wall_s'] / r['iterations']:.3f} | "
            f"{r['modes']:.0f}/{r['num_modes']} | {100 * r['hq']:.1f} | {r['kl']:.3f} |"
        )
    return "\n".join(lines)


def figure(results: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4))
    for ax, r in zip(axes, results, strict=True):
        title = f"{r['method']}: {r['modes']:.0f}/{r['num_modes']} modes, {100 * r['hq']:.0f}% HQ"
        scatter_figure(r["samples"], r["centers"], title=title, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def run(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=Path, default=Path("experiments"))
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "overrides", nargs="*", help="extra CLI arguments for every run, e.g. --trainer.limit_train_batches=50"
    )
    args, extra = parser.parse_known_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [train(name, args.experiments, args.out, [*args.overrides, *extra]) for name in args.methods]
    text = table(results)
    print("\n" + text)
    figure(results, args.out / "demo.png")
    summary = [{k: v for k, v in r.items() if k not in ("samples", "centers")} for r in results]
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    (args.out / "results.md").write_text(text + "\n")
    print(f"\nwrote {args.out / 'demo.png'}, {args.out / 'results.json'}")
    return results


if __name__ == "__main__":
    run()
