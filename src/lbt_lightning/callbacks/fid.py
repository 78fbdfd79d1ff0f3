"""FID, and optionally IS and KID, of generator samples via torchmetrics; logged as val/fid, val/is, val/kid."""

import socket
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics import Metric
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance
from torchmetrics.image.fid import NoTrainInceptionV3

from lbt_lightning.callbacks.evaluation import SampleEvaluator
from lbt_lightning.callbacks.periodic import log_metrics
from lbt_lightning.data.value_range import data_value_range, describe

INCEPTION_FEATURES = (64, 192, 768, 2048)


def inception_cache_path() -> Path:
    """Where torch-fidelity (``torch.hub.load_state_dict_from_url``) keeps its Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name


def inception_weights(path: str | None, download: bool, timeout: float = 30.0) -> str:
    """A local file of torch-fidelity's Inception-v3 weights: ``path``, else the torch hub cache,
    downloaded there first if ``download`` (with a socket timeout, so an offline machine fails
    instead of hanging). Raises naming the options to set when there is no file."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"ImageQuality: feature_extractor_weights_path={path!r} is not a file")
        return str(path)
    cached = inception_cache_path()
    if cached.is_file():
        return str(cached)
    how = (
        f"set ImageQuality's feature_extractor_weights_path to a local copy of {URL_INCEPTION_V3}, "
        f"or copy that file to {cached}, or set `feature` to your own feature network (an nn.Module)"
    )
    if not download:
        raise RuntimeError(
            f"ImageQuality: the Inception weights are not in the torch hub cache and download=False; {how}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
    except OSError as error:  # URLError, timeouts, DNS failures
        raise RuntimeError(f"ImageQuality: could not download the Inception weights ({error}); {how}") from error
    finally:
        socket.setdefaulttimeout(previous)
    return str(cached)


IMAGE_RANGES = ((-1.0, 1.0), (0.0, 1.0))


def to_uint8(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Images in ``value_range`` ((-1, 1) or (0, 1)) to uint8 [0, 255], rounded as torchvision's
    ``save_image`` does, so that FID of tensors equals FID of the saved PNGs (and real images
    round-trip exactly)."""
    if tuple(value_range) not in IMAGE_RANGES:
        raise ValueError(f"value_range must be one of {IMAGE_RANGES}, got {tuple(value_range)}")
    low, high = value_range
    return ((images - low) * (255 / (high - low)) + 0.5).clamp(0, 255).to(torch.uint8)


class ImageQuality(SampleEvaluator):
    """FID (and optionally IS and KID) of ``num_samples`` generator samples against as many real
    images, every N iterations and at the end of fit and in ``lightning validate``; logged as
    ``val/fid`` (``val/is``, ``val/is_std``, ``val/kid``, ``val/kid_std``). ``lightning test``
    scores ``test_num_samples`` (50,000) as ``test/*`` (see
    :class:`~lbt_lightning.callbacks.evaluation.SampleEvaluator`).

    Defaults: torch-fidelity's Inception-v3 (the TF FID network), 2048-d pool features, images
    resized to 299x299 with torch-fidelity's TF1-compatible bilinear resize (torchmetrics
    ``antialias=False``), 10,000 samples. The real statistics are computed once, from the first
    ``num_samples`` images of the datamodule's ``dataset``, and cached (per number of images). Under DDP every rank
    takes its share of real and fake images and torchmetrics sums the statistics over ranks.
    The generated images are those of ``pl_module.sample_indexed`` (fixed noise, the same at every
    evaluation and in ``lightning validate``); they and the real ones are read in the datamodule's
    ``value_range``, (-1, 1) or (0, 1).

    Arguments:
        every_n_iterations: Evaluation period in iterations.
        num_samples: Generated (and real) images per evaluation over all ranks (50,000 is the
            usual number for reported FID; 10,000 keeps training-time checks cheaper).
        feature: Inception feature layer (64, 192, 768, 2048), or an ``nn.Module`` that maps uint8
            images (B, 3, H, W) to features (B, d); used for IS and KID as well.
        inception_score: Also compute IS (Inception logits; with a module, its outputs).
        kid: Also compute KID (polynomial kernel, 100 subsets of up to ``kid_subset_size``).
        feature_extractor_weights_path: Local file of torch-fidelity's Inception weights
            (``weights-inception-2015-12-05-6726825d.pth``); None uses the torch hub cache.
        download: Download the weights into the torch hub cache when missing. Offline without
            weights, setup fails with a message naming these options.
        batch_size: Real images loaded at once.
        kid_subset_size: KID subset size (capped at the number of images).
        test_num_samples: Generated (and real) images scored by ``lightning test``.

    References:
        Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
        Equilibrium", arXiv:1706.08500; Salimans et al., arXiv:1606.03498 (IS); Bińkowski et al.,
        arXiv:1801.01401 (KID).
    """

    def __init__(
        self,
        every_n_iterations: int = 5000,
        num_samples: int = 10000,
        feature: int | nn.Module = 2048,
        inception_score: bool = False,
        kid: bool = False,
        feature_extractor_weights_path: str | None = None,
        download: bool = True,
        batch_size: int = 500,
        kid_subset_size: int = 1000,
        test_num_samples: int = 50_000,  # the usual number for reported FID
    ):
        super().__init__(every_n_iterations)
        for name, value in (
            ("num_samples", num_samples),
            ("batch_size", batch_size),
            ("kid_subset_size", kid_subset_size),
            ("test_num_samples", test_num_samples),
        ):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        if not isinstance(feature, nn.Module) and feature not in INCEPTION_FEATURES:
            raise ValueError(f"feature must be one of {INCEPTION_FEATURES} or an nn.Module, got {feature!r}")
        if isinstance(feature, nn.Module) and feature_extractor_weights_path is not None:
            raise ValueError("feature_extractor_weights_path is for the Inception network; leave it None with a module")
        self.num_samples, self.feature, self.batch_size = num_samples, feature, batch_size
        self.inception_score, self.kid, self.kid_subset_size = inception_score, kid, kid_subset_size
        self.feature_extractor_weights_path, self.download = feature_extractor_weights_path, download
        self.test_num_samples = test_num_samples
        self.metrics: dict[str, Metric] = {}
        self.num_real = 0  # real images in the cached statistics
        self.value_range = (-1.0, 1.0)  # the datamodule's, read in setup

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "predict":  # predict only writes samples: no weights or classifier needed
            return
        self.value_range = data_value_range(trainer.datamodule, "ImageQuality")
        if self.value_range not in IMAGE_RANGES:
            raise ValueError(
                f"ImageQuality needs images in [-1, 1] or [0, 1], but {type(trainer.datamodule).__name__}'s values "
                f"lie on {describe(self.value_range)} (value_range)"
            )
        path, error = None, None
        if not isinstance(self.feature, nn.Module):
            if trainer.local_rank == 0:  # one download per node; the other ranks then find the file
                try:
                    inception_weights(self.feature_extractor_weights_path, self.download)
                except (OSError, RuntimeError) as caught:
                    error = caught
            if not trainer.strategy.reduce_boolean_decision(error is None, all=True):
                raise error or RuntimeError("ImageQuality: the Inception weights are missing on another node")
            path = inception_weights(self.feature_extractor_weights_path, download=False)
        self.build(getattr(trainer.datamodule, "data_shape", (3, 299, 299)), path)

    def build(self, data_shape: tuple[int, ...], weights_path: str | None) -> None:
        """Create the metrics; ``weights_path`` is the Inception weights file (None with a module)."""
        if isinstance(self.feature, nn.Module):
            net = is_net = self.feature
        else:
            net = NoTrainInceptionV3("inception-v3-compat", [str(self.feature)], weights_path, antialias=False)
            net.num_features = self.feature  # spares torchmetrics a dummy forward pass
            is_net = None
            if self.inception_score:
                is_net = NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], weights_path, antialias=False)
        self.metrics = {
            "fid": FrechetInceptionDistance(net, reset_real_features=False, input_img_size=tuple(data_shape))
        }
        if self.kid:
            self.metrics["kid"] = KernelInceptionDistance(net, reset_real_features=False)
        if self.inception_score:
            self.metrics["is"] = InceptionScore(is_net)
        self.num_real = 0

    def num_samples_for(self, stage: str) -> int | None:
        return {"validate": self.num_samples, "test": self.test_num_samples}.get(stage)

    def begin(self, trainer: pl.Trainer, pl_module: pl.LightningModule, num_samples: int) -> None:
        self.prepare(pl_module.device, trainer.datamodule, num_samples, trainer.global_rank, trainer.world_size)

    def consume(self, samples: Tensor) -> None:
        self.update(to_uint8(samples, self.value_range), real=False)

    def results(self) -> dict[str, float]:
        values = {"fid": float(self.metrics["fid"].compute())}
        if "kid" in self.metrics:
            self.metrics["kid"].subset_size = min(self.kid_subset_size, self._num_fake, self.num_real)
            mean, std = self.metrics["kid"].compute()
            values |= {"kid": float(mean), "kid_std": float(std)}
        if "is" in self.metrics:
            mean, std = self.metrics["is"].compute()
            values |= {"is": float(mean), "is_std": float(std)}
        return values

    def evaluate(self, trainer, pl_module, iteration: int) -> None:
        self.last = self.compute(pl_module, trainer.datamodule, rank=trainer.global_rank, world_size=trainer.world_size)
        log_metrics(trainer, pl_module, self.last, step=iteration)

    def prepare(self, device: torch.device, datamodule, num_samples: int, rank: int, world_size: int) -> None:
        """Reset the generated-image statistics; (re)compute the real ones for ``num_samples`` images."""
        for metric in self.metrics.values():
            metric.to(device).reset()  # FID and KID keep their real features
        dataset = getattr(datamodule, "dataset", None)
        if dataset is None:
            raise ValueError(
                f"ImageQuality needs a set-up datamodule with a map-style `dataset` of images in [-1, 1] "
                f"(CIFAR10DataModule, ImageFolderDataModule), got {type(datamodule).__name__}"
            )
        if self.num_real != min(num_samples, len(dataset)):
            self.update_real(datamodule, device, rank, world_size, num_samples)
        self._num_fake = num_samples

    def compute(self, pl_module, datamodule, rank: int = 0, world_size: int = 1) -> dict[str, float]:
        """``val/*`` values of the samples ``0..num_samples-1`` of ``pl_module.sample_indexed``
        against ``datamodule.dataset``, each rank its chunks; on every rank."""
        self.prepare(pl_module.device, datamodule, self.num_samples, rank, world_size)
        self.consume_samples(pl_module, self.num_samples, rank, world_size)
        return {f"val/{k}": v for k, v in self.results().items()}

    def update(self, images: Tensor, real: bool) -> None:
        for name, metric in self.metrics.items():
            if name != "is":
                metric.update(images, real=real)
            elif not real:
                metric.update(images)

    def update_real(self, datamodule, device: torch.device, rank: int, world_size: int, num_samples: int) -> None:
        for name in ("fid", "kid"):  # drop the cached real statistics of another number of images
            if name in self.metrics:
                self.metrics[name].reset_real_features = True
                self.metrics[name].reset()
                self.metrics[name].reset_real_features = False
        dataset = datamodule.dataset
        self.num_real = min(num_samples, len(dataset))
        subset = Subset(dataset, range(rank, self.num_real, world_size))
        loader = DataLoader(subset, batch_size=self.batch_size, num_workers=getattr(datamodule, "num_workers", 0))
        for real in loader:
            real = real[0] if isinstance(real, (list, tuple)) else real
            self.update(to_uint8(real.to(device), self.value_range), real=True)
