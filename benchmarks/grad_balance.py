"""Which term drives LBT-GAN's generator: the norms of the generator gradients of λ·GAN and of the
teaching term, as the library logs them (``train/grad_norm_gan``, ``train/grad_norm_teach``), for
every shipped LBT-GAN config whose data is on this machine, and with ``balance``.

For each run: the medians over its first 3 teaching iterations ("start") and over the last 10 %
of its teaching iterations ("end"). A balanced run's "realized" column is the median of
teach/GAN over the teaching iterations after the first 10 %, the goal being within a factor 2
of ``balance``. Warm-ups are set to 0 so that teaching starts at initialisation.

    python benchmarks/grad_balance.py            # about 10 minutes on one CPU thread
    python benchmarks/grad_balance.py --quick    # fewer iterations, a smoke run
"""

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from common import RESULTS, build, machine, trainer, write_report

MNIST = ["--data.init_args.root=../shared/data/mnist", "--data.init_args.digits=test"]
NO_WARMUP = ["--model.init_args.warmup_iterations=0"]
# name, data folder, config, iterations, overrides
RUNS = [
    ("ring/lbt_gan", "ring", "lbt_gan", 500, []),
    ("ring/lbt_gan_fast", "ring", "lbt_gan_fast", 1000, []),
    ("ring/lbt_gan_fast_te20", "ring", "lbt_gan_fast_te20", 1000, []),
    ("grid/lbt_gan", "grid", "lbt_gan", 150, []),
    ("grid/lbt_gan_fast", "grid", "lbt_gan_fast", 500, []),
    ("grid/lbt_gan25_fast", "grid", "lbt_gan25_fast", 2000, []),
    ("stacked_mnist/lbt_gan_cpu", "stacked_mnist", "lbt_gan_cpu", 3, [*NO_WARMUP, *MNIST]),
    ("stacked_mnist/lbt_gan", "stacked_mnist", "lbt_gan", 2, [*NO_WARMUP, *MNIST]),
    ("ring/lbt_gan, balance 1", "ring", "lbt_gan", 500, ["--model.init_args.balance=1"]),
    ("grid/lbt_gan25_fast, balance 1", "grid", "lbt_gan25_fast", 2000, ["--model.init_args.balance=1"]),
]


class TeachingNorms(pl.Callback):
    """The two logged norms and the weight at every teaching iteration."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.teaching(pl_module.global_step):
            logs = pl_module._teaching_logs
            gan, teach = float(logs["train/grad_norm_gan"]), float(logs["train/grad_norm_teach"])
            self.rows.append(
                {
                    "iteration": pl_module.global_step,
                    "gan": gan,
                    "teach": teach,
                    "ratio": teach / gan,
                    "weight": float(logs["train/teach_weight"]),
                }  # fmt: skip
            )


def medians(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in ("gan", "teach", "ratio", "weight")}


def measure(name, data, config, iterations, overrides) -> dict:
    pl.seed_everything(1, verbose=False)
    model, dm = build(data, config, ["--seed_everything=1", *overrides])
    norms = TeachingNorms()
    start = time.process_time()
    trainer(iterations, [norms]).fit(model, dm)
    rows = norms.rows
    tail = rows[-max(1, len(rows) // 10) :]
    out = {
        "run": name, "iterations": iterations, "teaching_iterations": len(rows), "cpu_s": time.process_time() - start,
        "gan_weight": model.gan_weight, "balance": model.balance, "start": medians(rows[:3]), "end": medians(tail),
        "curve": rows,
    }  # fmt: skip
    if model.balance is not None:
        out["realized"] = statistics.median(r["ratio"] for r in rows[len(rows) // 10 :])
    print(
        f"{name:>32}: start ‖λ·GAN‖ {out['start']['gan']:.2e} ‖teach‖ {out['start']['teach']:.2e} "
        f"ratio {out['start']['ratio']:.3g}; end (it {iterations}) ratio {out['end']['ratio']:.3g} "
        f"w {out['end']['weight']:.3g}" + (f"; realized {out['realized']:.3g}" if "realized" in out else ""),
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations (at least 2)")
    parser.add_argument("--only", nargs="*", help="runs whose name contains one of these")
    parser.add_argument("--out", default=str(RESULTS / "grad_balance.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [r for r in RUNS if not args.only or any(o in r[0] for o in args.only)]
    results = []
    for name, data, config, iterations, overrides in runs:
        iterations = max(2, iterations // 10) if args.quick else iterations
        results.append(measure(name, data, config, iterations, overrides))
    print("\n| run | teaching its | start ‖∇ λ·GAN‖ | start ‖∇ teach‖ | start teach/GAN | end teach/GAN | end w |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        s, e = r["start"], r["end"]
        print(
            f"| {r['run']} | {r['teaching_iterations']} of {r['iterations']} | {s['gan']:.2e} | {s['teach']:.2e} | "
            f"{s['ratio']:.3g} | {e['ratio']:.3g} | {e['weight']:.3g} |"
        )
    write_report({"machine": machine(), "runs": results}, args.out)


if __name__ == "__main__":
    main()
