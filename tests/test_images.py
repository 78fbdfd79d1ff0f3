"""Natural images: data modules on files the tests write, DCGAN shapes, FID plumbing offline, image configs."""

import hashlib
import pickle
import time
import urllib.error
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from paths import EXPERIMENTS
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import CIFAR10

from lbt_lightning.callbacks import fid as fid_module
from lbt_lightning.callbacks.fid import ImageQuality, inception_cache_path, to_uint8
from lbt_lightning.data.images import CIFAR10DataModule, EndlessBatches, ImageFolderDataModule, UInt8Images
from lbt_lightning.lightning.cli import main
from lbt_lightning.networks import DCGANDiscriminator, DCGANGenerator

TRAINER = str(EXPERIMENTS / "trainer.yaml")


class TinyFeatures(nn.Module):
    """A fixed, download-free feature network: 4x4 average-pooled pixels, (B, 48)."""

    num_features = 48

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1)


def write_fake_cifar(root, monkeypatch, per_batch=8):
    """CIFAR-10 in torchvision's on-disk format (pickled batches); the checksums torchvision
    verifies are patched to the fake files' own."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5 = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": [0] * per_batch}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    for path in folder.iterdir():
        md5[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    return root


def write_image_folder(root, n=12, size=(40, 50)):
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = root / f"sub{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return root


def test_dcgan_shapes_follow_the_paper():
    for size, widths in ((32, [256, 128]), (64, [256, 128, 64])):
        g, d = DCGANGenerator(image_size=size), DCGANDiscriminator(image_size=size)
        x = g(torch.randn(3, g.z_dim)).detach()
        assert g.z_dim == 256 and x.shape == (3, 3, size, size) and float(x.abs().max()) <= 1
        assert d(x).shape == (3,) and d.in_shape == (3, size, size)
        assert [m.out_channels for m in g.deconv if isinstance(m, nn.ConvTranspose2d)] == [*widths, 3]
    with pytest.raises(ValueError, match="image_size"):
        DCGANGenerator(image_size=48)


def test_cifar_reads_torchvision_format_in_minus_one_one(tmp_path, monkeypatch):
    CIFAR10DataModule(root=str(tmp_path / "nowhere"))  # construction touches no file
    with pytest.raises(FileNotFoundError, match="download"):
        CIFAR10DataModule(root=str(tmp_path / "nowhere"), batch_size=4).setup("fit")
    write_fake_cifar(tmp_path, monkeypatch)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4)
    dm.setup("fit")
    assert len(dm.dataset) == 40 and dm.data_shape == (3, 32, 32)
    raw = torch.from_numpy(CIFAR10(str(tmp_path)).data[0]).permute(2, 0, 1)
    assert torch.equal(to_uint8(dm.dataset[0]), raw)  # [-1, 1] and back is exact
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1


def test_image_folder_crops_resizes_and_holds_out(tmp_path):
    write_image_folder(tmp_path)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, crop=30, holdout=2, batch_size=5, num_workers=0)
    dm.setup("fit")
    assert len(dm.dataset) == 10 and dm.data_shape == (3, 16, 16)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (5, 3, 16, 16) and -1 <= batch.min() < batch.max() <= 1
    with pytest.raises(FileNotFoundError, match="root"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup("fit")


def test_endless_stream_covers_each_epoch_once_across_workers_and_resumes():
    dataset = UInt8Images(torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 1, 1).contiguous())
    stream = EndlessBatches(dataset, batch_size=4, seed=7)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    ids = [to_uint8(b)[:, 0, 0, 0].tolist() for b, _ in zip(loader, range(10))]  # two epochs
    assert sorted(sum(ids[:5], [])) == list(range(20)) and sorted(sum(ids[5:], [])) == list(range(20))
    assert ids[:5] != ids[5:]  # a fresh permutation per epoch
    resumed = [to_uint8(b)[:, 0, 0, 0].tolist() for b, _ in zip(EndlessBatches(dataset, 4, seed=7, start=3), range(4))]
    assert resumed == ids[3:7]


class Replay:
    """Stands in for a module: ``sample_chunks`` returns the given images in order (optionally shifted)."""

    device = torch.device("cpu")

    def __init__(self, images, shift=0.0):
        self.images, self.shift = images, shift

    def sample_chunks(self, n, rank=0, world_size=1):
        return (c for c in (self.images[:n] + self.shift).clamp(-1, 1).split(100))


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    images = torch.rand(400, 3, 8, 8) * 2 - 1
    dm = SimpleNamespace(dataset=UInt8Images(to_uint8(images)), num_workers=0, value_range=(-1.0, 1.0))
    values = {}
    for shift in (0.0, 0.2, 0.5):
        callback = ImageQuality(num_samples=400, feature=TinyFeatures(), batch_size=100, kid=True, kid_subset_size=100)
        callback.build((3, 8, 8), None)
        values[shift] = callback.compute(Replay(images, shift), dm)
    assert abs(values[0.0]["val/fid"]) < 1e-3
    assert values[0.2]["val/fid"] > 0.1 and values[0.5]["val/fid"] > values[0.2]["val/fid"]
    assert abs(values[0.0]["val/kid"]) < 1e-2 and values[0.5]["val/kid"] > 0.1


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A random-initialised torch-fidelity Inception state dict in a file, built without any download."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def stub_trainer(datamodule):
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision)
    return SimpleNamespace(local_rank=0, strategy=strategy, datamodule=datamodule)


def test_random_inception_weights_load_through_the_weights_path(random_inception_weights, monkeypatch):
    start = time.perf_counter()
    weights = random_inception_weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    dm = SimpleNamespace(
        dataset=UInt8Images(to_uint8(images)), num_workers=0, data_shape=(3, 32, 32), value_range=(-1.0, 1.0)
    )
    callback = ImageQuality(
        num_samples=6, feature=64, feature_extractor_weights_path=str(weights), inception_score=True
    )
    callback.setup(stub_trainer(dm), None, "fit")
    values = callback.compute(Replay(images, 0.3), dm)
    assert set(values) == {"val/fid", "val/is", "val/is_std"} and np.isfinite(values["val/fid"])
    assert callback.metrics["fid"].inception.use_antialias is False  # torch-fidelity's resize
    print(f"random Inception through the weights path: {time.perf_counter() - start:.1f} s")


def test_offline_without_weights_fails_at_setup_naming_the_options(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    dm = SimpleNamespace(data_shape=(3, 32, 32), value_range=(-1.0, 1.0))
    with pytest.raises(RuntimeError, match="feature_extractor_weights_path") as info:
        ImageQuality(download=False).setup(stub_trainer(dm), None, "fit")
    assert str(inception_cache_path()) in str(info.value)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="could not download.*feature_extractor_weights_path"):
        ImageQuality().setup(stub_trainer(dm), None, "fit")
    with pytest.raises(FileNotFoundError, match="feature_extractor_weights_path"):
        fid_module.inception_weights(str(tmp_path / "missing.pth"), download=True)


IMAGE_CONFIGS = ["cifar10/gan.yaml", "cifar10/lbt_gan.yaml", "celeba/gan.yaml", "celeba/lbt_gan.yaml"]
# Narrow networks keep a CPU fit short; the configs' structure, data, callbacks and losses are unchanged.
NARROW = ["--model.init_args.generator.init_args.width=32", "--model.init_args.discriminator.init_args.width=8"]
SMALL_VAE = ["--model.init_args.estimator.init_args.hidden=[16]", "--model.init_args.estimator.init_args.latent_dim=4"]


@pytest.mark.parametrize("config", IMAGE_CONFIGS)
def test_image_config_fits_two_iterations_and_logs_fid(config, tmp_cwd, monkeypatch):
    if config.startswith("cifar10"):
        data = [f"--data.init_args.root={write_fake_cifar(tmp_cwd / 'cifar', monkeypatch)}"]
    else:
        root = write_image_folder(tmp_cwd / "faces", size=(70, 80))
        data = [f"--data.init_args.root={root}", "--data.init_args.holdout=2", "--data.init_args.num_workers=0"]
    lbt = ["--model.init_args.warmup_iterations=1", *SMALL_VAE] if "lbt_gan" in config else []
    args = ["--config", TRAINER, "--config", str(EXPERIMENTS / config), *data, *NARROW, *lbt]
    args += ["--data.init_args.batch_size=8", "--trainer.max_steps=2", "--trainer.log_every_n_steps=1"]
    args += ["--trainer.enable_progress_bar=false"]
    cli = main(args, run=False)
    callback = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ImageQuality))
    callback.feature, callback.num_samples, callback.batch_size = TinyFeatures(), 8, 8
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model.global_step == 2
    metrics = next((tmp_cwd / "runs").rglob("metrics.csv"))
    text = metrics.read_text()
    assert "val/fid" in text and ("train/teach_loss" in text) == ("lbt_gan" in config)
    assert (metrics.parent / "samples" / "grid_0000002.png").is_file()


def test_checkpoint_fid_through_lightning_test(tmp_cwd, monkeypatch, random_inception_weights):
    """``lightning test --ckpt_path``: FID of the checkpoint at ``test_num_samples`` through the test loop."""
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    root = write_fake_cifar(tmp_cwd / "cifar", monkeypatch)
    args = ["--config", TRAINER, "--config", str(EXPERIMENTS / "cifar10/gan.yaml"), f"--data.init_args.root={root}"]
    args += [*NARROW, "--data.init_args.batch_size=8", "--trainer.callbacks.init_args.feature=64"]
    args += [f"--trainer.callbacks.init_args.feature_extractor_weights_path={random_inception_weights}"]
    args += ["--trainer.callbacks.init_args.num_samples=8", "--trainer.enable_progress_bar=false"]
    main(["fit", *args, "--trainer.max_steps=2"])
    checkpoint = next((tmp_cwd / "runs").rglob("last.ckpt"))
    cli = main(["test", *args, "--trainer.callbacks.init_args.test_num_samples=12", f"--ckpt_path={checkpoint}"])
    callback = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ImageQuality))
    assert callback.num_evaluated == 12 and callback.num_real == 12
    assert set(callback.last) == {"test/fid"} and np.isfinite(callback.last["test/fid"])
    assert float(cli.trainer.callback_metrics["test/fid"]) == callback.last["test/fid"]
