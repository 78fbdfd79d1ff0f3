"""How evaluations sample a BatchNorm generator: eval mode (running statistics) against batch
statistics over chunks of C samples, on generators trained on the 25-grid (PacGAN's BatchNorm
generator, which keeps running statistics) and on Stacked MNIST (BatchNorm without running
statistics: batch statistics in every mode, so only the chunk size can matter).

For each trained generator and each way of sampling, the metrics of ``--sets`` disjoint sets of
sample indices (mean and spread over the sets: the sampling noise to compare a difference with).
The library's choice (``GenerativeModule.sample_indexed``) is batch statistics over chunks of 100;
docs/evaluation.md quotes this table.

    python benchmarks/sampling_mode.py            # about 6 minutes on one CPU thread
"""

import argparse
import copy
import statistics
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import RESULTS, build, machine, trainer, write_report

from lbt_lightning.callbacks.sample_metrics import PACGAN_MIN_COUNT
from lbt_lightning.metrics import ModeCoverage, StackedMNISTModes


class Snapshots(pl.Callback):
    """Copies of the generator after the given iterations."""

    def __init__(self, at: list[int]):
        self.at, self.generators = at, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.global_step in self.at:
            self.generators[pl_module.global_step] = copy.deepcopy(pl_module.generator)


@torch.no_grad()
def draw(generator: torch.nn.Module, start: int, n: int, mode: str) -> torch.Tensor:
    """Samples ``start .. start+n-1`` (noise seeded by index, as ``sample_indexed``), in ``mode``:
    ``"eval"`` (running statistics, chunks of 100) or ``"batch C"`` (training mode, chunks of C)."""
    generator = copy.deepcopy(generator)  # training mode updates running statistics: work on a copy
    size = 100 if mode == "eval" else int(mode.split()[1])
    generator.train(mode != "eval")
    rng, out = torch.Generator(), []
    for first in range(start, start + n, size):
        z = torch.stack(
            [torch.randn(generator.z_dim, generator=rng.manual_seed(i)) for i in range(first, first + size)]
        )
        out.append(generator(z))
    return torch.cat(out)[:n]


def grid_metrics(samples: torch.Tensor, dm) -> dict:
    metric = ModeCoverage(dm.centers, dm.sigma)
    metric.update(samples)
    values = {k: float(v) for k, v in metric.compute().items()}
    return {
        "modes_pacgan": int((metric.counts >= PACGAN_MIN_COUNT).sum()),
        "modes": values["modes"],
        "hq": values["hq"],
        "kl": values["kl"],
    }


def smnist_metrics(samples: torch.Tensor, classifier: str) -> dict:
    metric = StackedMNISTModes(classifier)
    metric.update(samples)
    return {k: float(v) for k, v in metric.compute().items() if k != "nonfinite"}


def study(name, data, config, iterations, at, modes, n, sets, metrics, overrides=()) -> list[dict]:
    pl.seed_everything(1, verbose=False)
    model, dm = build(data, config, ["--seed_everything=1", *overrides])
    snapshots = Snapshots(at)
    trainer(iterations, [snapshots]).fit(model, dm)
    rows = []
    for iteration, generator in snapshots.generators.items():
        for mode in modes:
            values = [metrics(draw(generator, s * n, n, mode)) for s in range(sets)]
            row = {"data": name, "iteration": iteration, "mode": mode}
            for key in values[0]:
                xs = [v[key] for v in values]
                row[key] = statistics.mean(xs)
                row[f"{key}_sd"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
            rows.append(row)
            print(
                f"{name:>13} it {iteration:>5} {mode:>10}: "
                + "  ".join(f"{k} {row[k]:.3f}±{row[k + '_sd']:.3f}" for k in values[0]),
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=3, help="disjoint index sets per measurement")
    parser.add_argument("--classifier", default="runs/smnist_classifier_test8k.pt")
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling_mode.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = study(
        "25-grid GAN", "grid", "gan25_fast", 3000, [300, 1000, 3000],
        ["eval", "batch 100", "batch 500", "batch 2500"], 2500, args.sets, lambda s: grid_metrics(s, grid_dm()),
    )  # fmt: skip
    if Path(args.classifier).is_file():
        rows += study(
            "Stacked MNIST", "stacked_mnist", "gan_cpu", 750, [250, 750],
            ["batch 64", "batch 100", "batch 1000"], 10_000, args.sets, lambda s: smnist_metrics(s, args.classifier),
        )  # fmt: skip
    write_report({"machine": machine(), "sets": args.sets, "rows": rows}, args.out)


_GRID = None


def grid_dm():
    global _GRID
    if _GRID is None:
        _, _GRID = build("grid", "gan25_fast")
    return _GRID


if __name__ == "__main__":
    main()
