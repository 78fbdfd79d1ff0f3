"""``lightning validate|test|predict --config <run>/config.yaml --ckpt_path <ckpt>`` through Lightning's loops."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from paths import EXPERIMENTS, MNIST_DIR, needs_mnist

from lbt_lightning.callbacks import ModeCoverageCallback, StackedMNISTModesCallback
from lbt_lightning.data.evaluation import RankShard, SampleIndices
from lbt_lightning.lightning.cli import main
from lbt_lightning.methods import GAN, LBTGAN
from lbt_lightning.networks.classifier import DigitClassifier, save_classifier

QUIET = ["--trainer.enable_progress_bar=false"]


class CountValidationBatches(pl.Callback):
    def __init__(self):
        self.batches = 0

    def on_validation_batch_start(self, *args, **kwargs):
        self.batches += 1


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    """The CLI runs in-process with explicit args; pytest's own argv would only trigger a warning."""
    monkeypatch.setattr(sys, "argv", ["lightning"])


def short_fit(folder, config: str, *extra: str) -> tuple[list[str], pl.Callback]:
    """Fit in ``folder``; return the run's ``--config``/``--ckpt_path`` arguments and a validation-batch counter."""
    with pytest.MonkeyPatch.context() as m:
        m.chdir(folder)
        m.setattr(sys, "argv", ["lightning"])
        cli = main(["--config", str(EXPERIMENTS / config), *extra, *QUIET], run=False)
        counter = CountValidationBatches()
        cli.trainer.callbacks.append(counter)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    run = folder / "runs/lightning_logs/version_0"
    return ["--config", str(run / "config.yaml"), f"--ckpt_path={run / 'checkpoints/last.ckpt'}"], counter


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A 3-iteration LBT-GAN run on the ring with narrow networks."""
    small = [f"--model.init_args.{m}.init_args.hidden=[16]" for m in ("generator", "estimator", "discriminator")]
    extra = [*small, "--model.init_args.unroll_steps=2", "--data.init_args.batch_size=500"]
    return short_fit(tmp_path_factory.mktemp("ring"), "ring/lbt_gan.yaml", "--trainer.max_steps=3", *extra)


def coverage(cli) -> ModeCoverageCallback:
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, ModeCoverageCallback))


def test_fit_runs_no_validation_loop(ring_run):
    _, counter = ring_run
    assert counter.batches == 0


def test_validate_prints_both_mode_rules_hq_and_kl(ring_run, tmp_cwd, capsys):
    args, _ = ring_run
    cli = main(["validate", *args, *QUIET])
    keys = {"val/modes", "val/modes_pacgan", "val/hq", "val/kl", "val/nonfinite"}
    assert set(coverage(cli).last) == keys and coverage(cli).num_evaluated == 2500  # VEEGAN's protocol
    out = capsys.readouterr().out
    assert all(key in out for key in keys) and "Validate metric" in out
    assert {k: float(v) for k, v in cli.trainer.callback_metrics.items()} == coverage(cli).last


def test_test_scores_its_own_number_of_samples(ring_run, tmp_cwd, capsys):
    args, _ = ring_run
    cli = main(["test", *args, *QUIET])
    values = coverage(cli).last
    assert (
        set(values) == {"test/modes", "test/modes_pacgan", "test/hq", "test/kl", "test/nonfinite"}
        and 0 <= values["test/hq"] <= 1
    )
    assert coverage(cli).num_evaluated == 2500 and "test/modes_pacgan" in capsys.readouterr().out


def test_predict_writes_n_samples_and_a_scatter(ring_run, tmp_cwd):
    args, _ = ring_run
    writer = ["--trainer.callbacks+=lbt_lightning.callbacks.SampleWriter", "--trainer.callbacks.num_samples=300"]
    main(["predict", *args, *QUIET, *writer, f"--trainer.callbacks.path={tmp_cwd / 'out/samples.npz'}"])
    samples = np.load(tmp_cwd / "out/samples.npz")["samples"]
    assert samples.shape == (300, 2) and (tmp_cwd / "out/samples.png").stat().st_size > 1000
    model = LBTGAN.load_from_checkpoint(args[-1].split("=", 1)[1]).eval()
    torch.testing.assert_close(torch.from_numpy(samples), model.sample_indexed(torch.arange(300)))


def test_predict_without_a_writer_gets_the_default_one(ring_run, tmp_cwd):
    args, _ = ring_run
    main(["predict", *args, *QUIET])
    run = Path(args[-1].split("=", 1)[1]).parents[1]  # beside the checkpoint's run
    files = sorted(p.name for p in run.rglob("predictions/*"))
    assert files == ["samples.png", "samples.pt"]
    assert torch.load(next(run.rglob("samples.pt"))).shape == (1_000, 2)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # the list below drops the checkpoint
def test_validate_without_a_metric_callback_names_them(ring_run, tmp_cwd):
    args, _ = ring_run
    with pytest.raises(ValueError, match="ModeCoverageCallback"):
        main(["validate", *args, *QUIET, "--trainer.callbacks=lbt_lightning.callbacks.ScatterPlot"])


def test_sample_indices_are_split_over_ranks_exactly_once_in_whole_chunks():
    indices = SampleIndices(750)  # chunks of 100: 0-99 ... 600-699, 700-749
    shards = [list(RankShard(indices, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(750)) and [len(s) for s in shards] == [300, 250, 200]
    assert shards[1][:101] == [*range(100, 200), 400]  # rank 1: chunks 1, 4, 7
    assert len(RankShard(indices, num_replicas=3, rank=1)) == 250


def test_sample_i_does_not_depend_on_the_batch():
    from lbt_lightning.networks import MLPDiscriminator, MLPGenerator

    model = GAN(MLPGenerator(hidden=[8]), MLPDiscriminator(hidden=[8]))
    whole = model.sample_indexed(torch.arange(10))
    parts = torch.cat([model.sample_indexed(torch.arange(0, 3)), model.sample_indexed(torch.arange(3, 10))])
    torch.testing.assert_close(parts, whole)
    assert not torch.allclose(whole[0], whole[1])


@needs_mnist
def test_stacked_mnist_validate_test_predict(tmp_path, capsys):
    classifier = tmp_path / "classifier.pt"
    save_classifier(DigitClassifier(), classifier)  # untrained: the plumbing is under test
    narrow = [
        "--model.init_args.generator.init_args.hidden=32",
        "--model.init_args.generator.init_args.channels=[4,4]",
        "--model.init_args.discriminator.init_args.feature_dim=4",
        "--model.init_args.discriminator.init_args.hidden=16",
    ]
    data = [f"--data.init_args.root={MNIST_DIR}", "--data.init_args.num_samples=64", "--data.init_args.batch_size=16"]
    metric = [
        f"--trainer.callbacks.init_args.classifier_path={classifier}",
        "--trainer.callbacks.init_args.num_samples=40",
    ]
    fit = [*narrow, *data, *metric, "--trainer.max_steps=2", "--trainer.callbacks.init_args.batch_size=20"]
    args, _ = short_fit(tmp_path, "stacked_mnist/gan_cpu.yaml", *fit)
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tmp_path)
        runs = [main(["validate", *args, *QUIET])]
        runs.append(main(["test", *args, *QUIET, "--trainer.callbacks.init_args.test_num_samples=60"]))
        classifier.unlink()  # predict only writes samples: it needs no classifier
        main(["predict", *args, *QUIET, "--trainer.callbacks+=lbt_lightning.callbacks.SampleWriter",
             "--trainer.callbacks.num_samples=100"])  # fmt: skip
    modes = [next(cb for cb in c.trainer.callbacks if isinstance(cb, StackedMNISTModesCallback)) for c in runs]
    assert set(modes[0].last) == {"val/modes", "val/kl", "val/nonfinite"} and modes[0].num_evaluated == 40
    assert set(modes[1].last) == {"test/modes", "test/kl", "test/nonfinite"} and modes[1].num_evaluated == 60
    assert 1 <= modes[1].last["test/modes"] <= 60
    out = capsys.readouterr().out
    assert "val/kl" in out and "test/modes" in out
    samples = torch.load(next(tmp_path.rglob("predictions/samples.pt")))
    assert samples.shape == (100, 3, 28, 28) and next(tmp_path.rglob("predictions/samples.png")).is_file()


@pytest.mark.slow
def test_two_processes_validate_and_predict_as_one(ring_run, tmp_path):
    """Two gloo ranks split the sample indices: the same metrics and the same file as one process."""
    args, _ = ring_run
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    values = {}
    for name, extra in (("one", []), ("two", ddp)):
        path = tmp_path / f"{name}.pt"
        for sub, more in (("validate", []), ("predict", [f"--trainer.callbacks.path={path}"])):
            writer = [
                "--trainer.callbacks+=lbt_lightning.callbacks.SampleWriter",
                "--trainer.callbacks.num_samples=777",
            ]
            cmd = [sys.executable, "-m", "lbt_lightning", sub, *args, *QUIET, *extra, *(writer + more if more else [])]
            out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-3000:]
            if sub == "validate":
                values[name] = [line for line in out.stdout.splitlines() if "val/" in line]
    assert values["one"] == values["two"] and len(values["one"]) == 5  # modes, modes_pacgan, hq, kl, nonfinite
    torch.testing.assert_close(torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt"))
