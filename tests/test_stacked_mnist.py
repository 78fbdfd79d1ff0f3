"""Stacked MNIST: IDX reading and its errors, triples, networks, the modes/KL metric against numpy, callbacks,
and (slow) the trained digit classifier on real triples."""

import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from paths import MNIST_DIR, needs_mnist
from pytorch_lightning.loggers import CSVLogger, Logger
from torch import nn

from lbt_lightning.callbacks import SampleGrid, StackedMNISTModesCallback
from lbt_lightning.callbacks import sample_grid as sample_grid_module
from lbt_lightning.data import StackedMNISTDataModule
from lbt_lightning.data import stacked_mnist as data_module
from lbt_lightning.data.stacked_mnist import StackedMNIST, load_mnist
from lbt_lightning.methods import GAN
from lbt_lightning.metrics import StackedMNISTModes
from lbt_lightning.networks import DigitClassifier, SMNISTDiscriminator, SMNISTGenerator
from lbt_lightning.networks.classifier import load_classifier, save_classifier
from lbt_lightning.programs import classifier as classifier_cli

FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def reference(digit_labels: np.ndarray) -> tuple[int, float]:
    """PAPER.md §5.2 in plain numpy: mode id c1 + 10 c2 + 100 c3, modes hit, Σ p log(1000 p) with a 1e-20 guard."""
    modes = digit_labels[:, 0] + 10 * digit_labels[:, 1] + 100 * digit_labels[:, 2]
    p = np.bincount(modes, minlength=1000) / len(modes)
    return int((p > 0).sum()), float(np.sum(p * np.log(1000 * p + 1e-20)))


def all_modes(repeat: int) -> torch.Tensor:
    ids = torch.arange(1000).repeat(repeat)
    return torch.stack([ids % 10, ids // 10 % 10, ids // 100], dim=1)


@pytest.mark.parametrize(
    "labels, modes, kl",
    [(all_modes(26), 1000, 0.0), (torch.tensor([[3, 1, 4]]).repeat(26000, 1), 1, math.log(1000))],
    ids=["uniform", "one-mode"],
)
def test_metric_matches_numpy_reference(labels, modes, kl):
    metric = StackedMNISTModes()
    metric.update(labels)
    values = metric.compute()
    ref_modes, ref_kl = reference(labels.numpy())
    assert (float(values["modes"]), ref_modes) == (modes, modes)
    assert float(values["kl"]) == pytest.approx(ref_kl, abs=1e-6) and ref_kl == pytest.approx(kl, abs=1e-9)


def test_metric_random_labels_split_and_merged_like_ddp():
    labels = torch.stack([torch.randint(10, (5000,)), torch.randint(10, (5000,)), torch.randint(3, (5000,))], dim=1)
    one, a, b = StackedMNISTModes(), StackedMNISTModes(), StackedMNISTModes()
    one.update(labels)
    a.update(labels[:1234])
    b.update(labels[1234:])
    a.merge_state(b)  # what the sum reduction does across ranks
    ref_modes, ref_kl = reference(labels.numpy())
    for metric in (one, a):
        values = metric.compute()
        assert float(values["modes"]) == ref_modes == 300
        assert float(values["kl"]) == pytest.approx(ref_kl, abs=1e-5)


class PixelDigits(nn.Module):
    """A stand-in classifier: the digit is round(10 · mean pixel value)."""

    def forward(self, x):
        return nn.functional.one_hot((x.mean((1, 2, 3)) * 10).round().long().clamp(0, 9), 10).float()


def test_metric_classifies_each_channel_in_order():
    digits = torch.tensor([[1, 2, 3], [9, 0, 5]])
    images = (digits.float() / 10).view(2, 3, 1, 1).expand(2, 3, 28, 28)
    metric = StackedMNISTModes(PixelDigits(), batch_size=1)
    assert metric.digits(images).tolist() == digits.tolist()
    metric.update(images)
    assert metric.counts.nonzero().flatten().tolist() == [321, 509]  # c1 + 10 c2 + 100 c3


@pytest.mark.parametrize("bad", [torch.tensor([[1, 2, 10]]), torch.tensor([1, 2, 3])])
def test_metric_refuses_bad_labels(bad):
    with pytest.raises(ValueError):
        StackedMNISTModes(PixelDigits()).update(bad)


def test_nan_images_are_counted_and_left_out_of_the_histogram():
    digits = torch.tensor([[1, 2, 3], [1, 2, 3]])
    images = (digits.float() / 10).view(2, 3, 1, 1).expand(2, 3, 28, 28).clone()
    images[1, 2, 5, 5] = math.nan
    metric = StackedMNISTModes(PixelDigits())
    metric.update(images)
    metric.update(torch.full((2, 3, 28, 28), math.inf))  # a batch with nothing to classify
    got = {k: float(v) for k, v in metric.compute().items()}
    assert got == pytest.approx({"modes": 1.0, "kl": math.log(1000), "nonfinite": 3.0})


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # called before update on purpose
def test_an_empty_metric_is_nan_not_the_best_value():
    got = StackedMNISTModes().compute()
    assert float(got["modes"]) == 0 and math.isnan(float(got["kl"]))


@needs_mnist
def test_shared_test_set_triples_cover_all_modes():
    dm = StackedMNISTDataModule(root=str(MNIST_DIR), digits="test", num_samples=26000, batch_size=64)
    dm.setup("fit")
    data = dm.dataset
    assert len(data) == 26000 and data.labels.min() >= 0 and data.labels.max() <= 999
    _, digit_labels = load_mnist(MNIST_DIR, "test")
    metric = StackedMNISTModes()
    metric.update(digit_labels[data.index])  # the true digits: the data itself must cover everything
    values = metric.compute()
    assert float(values["modes"]) == 1000 and float(values["kl"]) < 0.1
    assert torch.equal((digit_labels[data.index] * torch.tensor([1, 10, 100])).sum(1), data.labels)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (64, 3, 28, 28) and batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    again = StackedMNISTDataModule(root=str(MNIST_DIR), digits="test", num_samples=26000).load_dataset()
    assert torch.equal(again.index, data.index)  # fixed triples_seed


def test_construction_reads_nothing_and_missing_file_is_named(tmp_path):
    dm = StackedMNISTDataModule(root=str(tmp_path / "nowhere"), digits="test")
    assert dm.data_shape == (3, 28, 28)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        dm.setup("fit")


def copy_test_set(tmp_path):
    for name in FILES:
        shutil.copy(MNIST_DIR / name, tmp_path / name)
    return tmp_path


@needs_mnist
def test_corrupt_gz_fails_md5_naming_the_file(tmp_path):
    path = copy_test_set(tmp_path) / FILES[0]
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{FILES[0]}: MD5 .* does not match"):
        load_mnist(tmp_path, "test")


@needs_mnist
def test_truncated_gz_fails(tmp_path):
    path = copy_test_set(tmp_path) / FILES[1]
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=FILES[1]):
        load_mnist(tmp_path, "test")


@needs_mnist
def test_unpacked_files_are_read_and_checked(tmp_path):
    for name in FILES:
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    images, labels = load_mnist(tmp_path, "test")
    ref_images, ref_labels = load_mnist(MNIST_DIR, "test")
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:-5])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: .*truncated"):
        load_mnist(tmp_path, "test")
    raw.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="bad header"):
        load_mnist(tmp_path, "test")


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    class BrokenMNIST:
        def __init__(self, root, download):
            raw = Path(root, "MNIST", "raw")
            raw.mkdir(parents=True)
            (raw / FILES[0]).write_bytes(b"half a file")
            raise RuntimeError("connection reset")

    monkeypatch.setattr(data_module, "MNIST", BrokenMNIST)
    dm = StackedMNISTDataModule(root=str(tmp_path / "mnist"), download=True, digits="test")
    with pytest.raises(RuntimeError, match="connection reset"):
        dm.prepare_data()
    assert list((tmp_path / "mnist").iterdir()) == []


@needs_mnist
def test_download_moves_verified_files_into_root(tmp_path, monkeypatch):
    class FakeMNIST:  # what torchvision leaves: the .gz files under <root>/MNIST/raw
        def __init__(self, root, download):
            raw = Path(root, "MNIST", "raw")
            raw.mkdir(parents=True)
            copy_test_set(raw)

    monkeypatch.setattr(data_module, "MD5", {name: data_module.MD5[name] for name in FILES})
    monkeypatch.setattr(data_module, "MNIST", FakeMNIST)
    dm = StackedMNISTDataModule(
        root=str(tmp_path / "mnist"), download=True, digits="test", num_samples=100, batch_size=10
    )
    dm.prepare_data()
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(FILES)
    dm.setup("fit")
    assert len(dm.dataset) == 100


def test_networks_shapes_and_arguments():
    g, d = SMNISTGenerator(), SMNISTDiscriminator()
    with torch.no_grad():
        x = g(torch.randn(5, g.z_dim))
    assert g.z_dim == 256 and x.shape == (5, 3, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert d(x).shape == (5,) and d.in_shape == (3, 28, 28)
    assert SMNISTDiscriminator(norm="batch")(x).shape == (5,)
    assert len(list(g.buffers())) == 0  # batch statistics always, as the authors' training=True
    with pytest.raises(ValueError, match="norm"):
        SMNISTDiscriminator(norm="spectral")
    with pytest.raises(ValueError, match="in_shape"):
        SMNISTDiscriminator(in_shape=(3, 30, 30))
    with pytest.raises(ValueError, match="arch"):
        DigitClassifier("resnet")
    assert DigitClassifier("paper")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_missing_classifier_checkpoint_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lbt_lightning.programs.classifier"):
        load_classifier(tmp_path / "none.pt")


class ImageLogger(Logger):
    """Records what a W&B-like logger would receive."""

    name, version = "images", 0
    images: list = []

    @property
    def experiment(self):
        return self

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_image(self, key, images, step=None):
        self.images.append((key, images, step))


@needs_mnist
def test_callbacks_log_modes_kl_and_image_grids(tmp_path, monkeypatch):
    path = tmp_path / "clf.pt"
    save_classifier(DigitClassifier(), path)  # untrained: only the plumbing is under test
    added = []

    class FakeTensorBoard(Logger):
        name, version, log_hyperparams, log_metrics = "tb", 0, lambda *a, **k: None, lambda *a, **k: None

        @property
        def experiment(self):
            return type("Writer", (), {"add_image": lambda _, key, img, global_step: added.append((key, img.shape))})()

    monkeypatch.setattr(sample_grid_module, "TensorBoardLogger", FakeTensorBoard)
    dm = StackedMNISTDataModule(root=str(MNIST_DIR), digits="test", num_samples=1000, batch_size=16)
    modes = StackedMNISTModesCallback(str(path), every_n_iterations=2, num_samples=250, batch_size=100)
    grid = SampleGrid(every_n_iterations=2, num_samples=12, nrow=4)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, logger=[CSVLogger(tmp_path), ImageLogger(), FakeTensorBoard()],
        callbacks=[modes, grid], enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(GAN(SMNISTGenerator(), SMNISTDiscriminator()), dm)
    assert set(modes.last) == {"val/modes", "val/kl", "val/nonfinite"} and 1 <= modes.last["val/modes"] <= 250
    assert grid.last_path.name == "grid_0000002.png" and grid.last_path.is_file()
    assert ImageLogger.images[-1] == ("val/samples", [str(grid.last_path)], 2)
    assert added == [("val/samples", (3, 3 * 30 + 2, 4 * 30 + 2))]
    text = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "val/modes" in text and "val/kl" in text
    with pytest.raises(ValueError, match="value_range"):
        SampleGrid(value_range=(1.0, -1.0))


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory):
    """The documented offline command: train on 8,000 test digits, validate on the other 2,000 (~25-50 s)."""
    out = tmp_path_factory.mktemp("classifier") / "smnist_classifier.pt"
    threads = torch.get_num_threads()
    info = classifier_cli.main(["--root", str(MNIST_DIR), "--train-on", "test", "--threads", "1", "--out", str(out)])
    torch.set_num_threads(threads)
    return out, info


@pytest.mark.slow
@needs_mnist
def test_classifier_command_reaches_97_percent(trained_classifier):
    path, info = trained_classifier
    assert info["val_accuracy"] >= 0.97 and info["val_size"] == 2000 and info["train_size"] == 8000
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["val_accuracy"] == info["val_accuracy"] and len(checkpoint["val_indices"]) == 2000


@pytest.mark.slow
@needs_mnist
def test_real_triples_through_trained_classifier(trained_classifier):
    """Triples of the 2,000 digits the classifier never saw: the real data must cover nearly every mode."""
    path, _ = trained_classifier
    held_out = torch.load(path, weights_only=True)["val_indices"]
    digits, labels = load_mnist(MNIST_DIR, "test")
    triples = StackedMNIST(digits[held_out], labels[held_out], num_samples=26000, seed=12345)
    metric = StackedMNISTModes(str(path))
    for idx in torch.arange(26000).split(2000):
        metric.update(triples.images(idx))
    values = metric.compute()
    assert float(values["modes"]) >= 950 and float(values["kl"]) < 0.1


@pytest.mark.slow
@needs_mnist
def test_the_stacked_mnist_benchmark_runs_end_to_end(trained_classifier, benchmark_script, tmp_path, capsys):
    """``benchmarks/stacked_mnist.py`` on a budget of seconds: curves, table, plot and sample grids;
    ``--combine`` joins the report into a table across seeds and a plot."""
    bench = benchmark_script("stacked_mnist")
    path, _ = trained_classifier
    out = tmp_path / "smnist.json"
    bench.main(["--runs", "gan_cpu@4", "lbt_gan_cpu,warmup_iterations=2,balance=1.0@8", "--seeds", "0",
                "--evaluations", "2", "--num-samples", "500", "--jobs", "1", "--classifier", str(path),
                "--root", str(MNIST_DIR), "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert [r["config"] for r in report["runs"]] == ["gan_cpu", "lbt_gan_cpu"]
    assert all(len(r["curve"]) >= 2 and 0 <= r["summary"]["modes"] <= 1000 for r in report["runs"])
    assert "| gan_cpu | 0 |" in capsys.readouterr().out
    assert (tmp_path / "smnist.png").is_file() and (tmp_path / "smnist_gan_cpu.png").is_file()
    combined = bench.main(["--combine", str(out), str(out), "--out", str(tmp_path / "both.json")])
    assert len(combined["runs"]) == 4 and "| gan_cpu | 0, 0 |" in capsys.readouterr().out
    assert (tmp_path / "both.png").is_file()
