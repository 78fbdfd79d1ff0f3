"""What a Stacked MNIST iteration costs: ms and FLOPs of a GAN iteration, an LBT-GAN GAN-only
iteration (warm-up or between teaching iterations), an LBT-GAN teaching iteration, and the
average LBT-GAN iteration of a config (its warm-up and ``teach_every`` included), in one run.

Usage::

    python benchmarks/smnist_cost.py [--gan gan_cpu] [--lbt-gan lbt_gan_cpu] [--threads 1] [--iterations 6]
        [--set='--model.init_args.X=Y ...'] [--root ../shared/data/mnist] [--out benchmarks/results/smnist_cost.json]

``experiments/stacked_mnist/<gan>.yaml`` and ``<lbt-gan>.yaml`` on the real MNIST digits, eager unroll,
no evaluation callbacks. Time: the median wall time of ``--iterations`` iterations of each kind
after two warm-up ones, the kinds interleaved in rounds (a busy spell of the machine hits all of
them alike); FLOPs: ``torch.utils.flop_counter`` over one iteration (matmuls and convolutions, as
it counts them). The average LBT-GAN iteration of a config of L = ``max_steps`` iterations with a
warm-up of W and teaching every E-th after it: (T · teaching + (L − T) · GAN-only) / L with
T = ceil((L − W) / E) teaching iterations. Prints a table; writes JSON.
"""

import argparse
import math
import shlex
import statistics
import time

import pytorch_lightning as pl
import torch
from common import RESULTS, build, machine, machine_line, trainer, write_report
from probes import FlopCount


def kinds(gan: str, lbt_gan: str) -> dict:
    """label: (config, model overrides) of each kind of iteration."""
    return {
        "GAN": (gan, []),
        "LBT-GAN, GAN-only iteration": (lbt_gan, ["--model.init_args.warmup_iterations=1000000"]),
        "LBT-GAN, teaching iteration": (
            lbt_gan, ["--model.init_args.warmup_iterations=0", "--model.init_args.teach_every=1"],
        ),
    }  # fmt: skip


class Times(pl.Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.start)


def make(config: str, overrides: list[str], args) -> tuple:
    data = [f"--data.init_args.root={args.root}"]
    model, datamodule = build("stacked_mnist", config, [*data, *overrides, "--model.init_args.unroll_backend=eager"]
                              if config.startswith("lbt") else [*data, *overrides])  # fmt: skip
    return model, datamodule


def config_value(config: str, key: str, default):
    import yaml
    from common import EXPERIMENTS

    text = yaml.safe_load((EXPERIMENTS / "stacked_mnist" / f"{config}.yaml").read_text())
    node = text
    for part in key.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if node != {} else default


def average(table: dict, length: int, warmup: int, every: int, key: str) -> float:
    teaching = max(0, math.ceil((length - warmup) / every))
    return (teaching * table["LBT-GAN, teaching iteration"][key]
            + (length - teaching) * table["LBT-GAN, GAN-only iteration"][key]) / length  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan", default="gan_cpu", help="the GAN's config in experiments/stacked_mnist/")
    parser.add_argument("--lbt-gan", default="lbt_gan_cpu", help="the LBT-GAN's config, whose schedule is averaged")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations per kind")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the timed iterations are split into")
    parser.add_argument("--root", default="../shared/data/mnist", help="MNIST IDX files")
    parser.add_argument("--set", default="", help="overrides for every run: --set='--key=value ...'")
    parser.add_argument("--out", default=str(RESULTS / "smnist_cost.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra = shlex.split(args.set)
    info = machine()
    print(machine_line(info), flush=True)
    entries = {}
    for label, (config, overrides) in kinds(args.gan, args.lbt_gan).items():
        torch.manual_seed(0)
        model, data = make(config, [*overrides, *extra], args)
        flops = FlopCount()
        trainer(2, [flops]).fit(model, data)  # two warm-up iterations, the second one counted
        entries[label] = {"model": model, "data": data, "gflop": flops.flops / 1e9, "times": []}
    per_round = max(1, args.iterations // args.rounds)
    for _ in range(args.rounds):
        for entry in entries.values():
            timer = Times()
            trainer(per_round, [timer]).fit(entry["model"], entry["data"])
            entry["times"] += timer.times
    table = {
        label: {"ms": 1000 * statistics.median(e["times"]), "gflop": e["gflop"], "timed": len(e["times"])}
        for label, e in entries.items()
    }
    length = config_value(args.lbt_gan, "trainer.max_steps", 1000)
    warmup = config_value(args.lbt_gan, "model.init_args.warmup_iterations", 0)
    every = config_value(args.lbt_gan, "model.init_args.teach_every", 1)
    for extra_arg in extra:  # a --set override of the schedule applies to the average too
        key, _, value = extra_arg.removeprefix("--").partition("=")
        if key == "model.init_args.warmup_iterations":
            warmup = int(value)
        elif key == "model.init_args.teach_every":
            every = int(value)
        elif key == "trainer.max_steps":
            length = int(value)
    label = f"LBT-GAN average ({length} iterations, warm-up {warmup}, teach_every {every})"
    table[label] = {key: average(table, length, warmup, every, key) for key in ("ms", "gflop")}
    gan = table["GAN"]
    print("\n| iteration | ms | GFLOP | × GAN (time) | × GAN (FLOPs) |\n|---|---|---|---|---|")
    for name, row in table.items():
        row["x_gan_ms"], row["x_gan_flop"] = row["ms"] / gan["ms"], row["gflop"] / gan["gflop"]
        print(f"| {name} | {row['ms']:.0f} | {row['gflop']:.2f} | {row['x_gan_ms']:.1f} | {row['x_gan_flop']:.1f} |")
    info["load_average_after"] = machine().get("load_average_1_5_15min")
    report = {"machine": info, "settings": vars(args), "kinds": table}
    write_report(report, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
