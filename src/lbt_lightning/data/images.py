"""Natural images in [-1, 1]: CIFAR-10 (torchvision) and any folder of images, e.g. CelebA (PAPER.md §3.3, §3.4)."""

import os
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info
from torchvision import transforms
from torchvision.datasets import CIFAR10
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

from lbt_lightning.data.evaluation import SampleIndexLoaders


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class UInt8Images(Dataset):
    """Images held in memory as uint8 (N, C, H, W), returned as floats in [-1, 1]."""

    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> Tensor:
        return self.images[index].float() / 127.5 - 1.0

    def __getitems__(self, indices: list[int]) -> list[Tensor]:  # one gather per batch, not one per image
        return list(self[torch.as_tensor(indices)])


class ImageFiles(Dataset):
    """Every image file under ``root`` (any depth, sorted), loaded as RGB and transformed."""

    def __init__(self, files: list[Path], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        path = self.files[index]
        try:
            image = default_loader(str(path))
        except Exception as error:  # e.g. a JPEG cut short, which passes the header check at setup
            raise OSError(f"cannot decode image file {str(path)!r}: {error}") from error
        return self.transform(image)


def unreadable_images(files: list[Path]) -> list[tuple[Path, str]]:
    """(file, reason) for every file PIL cannot identify or whose structure ``verify`` rejects
    (tens of microseconds a file: headers and chunk checksums, not a full decode)."""
    bad = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as error:
            bad.append((path, f"{type(error).__name__}: {error}"))
    return bad


class EndlessBatches(IterableDataset):
    """Full batches of a finite data set forever, so that one iteration is one batch.

    The stream is a fresh random permutation of the data set per epoch (without replacement
    within an epoch), cut into ``len(dataset) // batch_size`` full batches. Batch ``k`` of the
    stream goes to DDP rank ``k % world_size`` and, within a rank, to DataLoader worker
    ``(k // world_size) % num_workers``, so ranks and workers never repeat each other's batches
    when every rank has the same ``seed``. ``start`` skips that rank's first batches (resume).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, start: int = 0):
        self.dataset, self.batch_size, self.seed, self.start = dataset, batch_size, seed, start

    def __iter__(self):
        dist = torch.distributed
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = torch.Generator().manual_seed(self.seed)
        per_epoch, k = len(self.dataset) // self.batch_size, 0
        first = self.start * world  # stream position of this rank's first batch after a resume
        while True:
            perm = torch.randperm(len(self.dataset), generator=rng)
            for b in range(per_epoch):
                if k >= first and k % world == rank and (k // world) % workers == worker:
                    yield self.fetch(perm[b * self.batch_size : (b + 1) * self.batch_size].tolist())
                k += 1

    def fetch(self, indices: list[int]) -> Tensor:
        if hasattr(self.dataset, "__getitems__"):
            return default_collate(self.dataset.__getitems__(indices))
        return default_collate([self.dataset[i] for i in indices])


class ImageDataModule(SampleIndexLoaders, pl.LightningDataModule):
    """Base: serves ``dataset`` (set by ``setup``) as an endless stream of ``batch_size`` batches.

    Training length is ``trainer.max_steps`` iterations, as for the 2-D mixtures; data epochs are
    internal to the stream. The stream's seed is drawn from
    the global RNG at ``setup`` (``seed_everything`` makes it the same on every rank) and is
    checkpointed; a resumed run continues the stream where the checkpoint left it.

    Arguments:
        batch_size: Real images per iteration (and per rank under DDP).
        num_workers: DataLoader worker processes.
        seed: Seed of the data stream; None draws it from the global torch RNG at setup.
    """

    data_shape: tuple[int, int, int]
    value_range = (-1.0, 1.0)  # UInt8Images and the transforms of the subclasses

    def __init__(self, *, batch_size: int, num_workers: int, seed: int | None = None):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.dataset: Dataset | None = None
        self.seed = seed

    def load_dataset(self) -> Dataset:
        raise NotImplementedError

    def check(self) -> None:
        """Load the data set (once) and check it against ``batch_size``; the CLI calls it before
        the Trainer starts (unless the data is still to be downloaded: Lightning's
        ``prepare_data`` does that on one process), ``setup`` again."""
        if self.dataset is None:
            self.dataset = self.load_dataset()
        if len(self.dataset) < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the data set ({len(self.dataset)} images) "
                f"(set --data.init_args.batch_size to at most {len(self.dataset)})"
            )

    def setup(self, stage: str | None = None) -> None:
        self.check()
        if self.seed is None:
            self.seed = int(torch.randint(2**62, ()))

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0  # > 0 when resuming
        stream = EndlessBatches(self.dataset, self.batch_size, self.seed, start)
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator(),  # creating the iterator must not draw from the global RNG
        )

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seed = state_dict["seed"]


class CIFAR10DataModule(ImageDataModule):
    """The 50,000 CIFAR-10 training images, (3, 32, 32) in [-1, 1] (PAPER.md §3.3).

    Reads torchvision's ``<root>/cifar-10-batches-py``; nothing is read at construction.

    Arguments:
        root: Folder holding (or to receive) ``cifar-10-batches-py``.
        batch_size: Real images per iteration (paper: 512).
        download: Download CIFAR-10 into ``root`` in ``prepare_data`` if it is missing.
        num_workers: DataLoader workers (the images are in memory, so 0 is usually fastest).
        seed: Seed of the data stream; None draws it from the global RNG at setup.

    Example:
        >>> dm = CIFAR10DataModule(root="data", download=True)  # doctest: +SKIP
    """

    data_shape = (3, 32, 32)

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 512,  # PAPER.md §2.2
        download: bool = False,
        num_workers: int = 0,
        seed: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.download = str(root), download

    def prepare_data(self) -> None:
        if self.download:
            CIFAR10(self.root, train=True, download=True)

    def load_dataset(self) -> Dataset:
        try:
            cifar = CIFAR10(self.root, train=True, download=False)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"CIFAR-10 not found or corrupt under root={self.root!r} ({error}). Set download=True "
                "(--data.init_args.download=true) or point root at the folder holding cifar-10-batches-py."
            ) from error
        return UInt8Images(torch.from_numpy(cifar.data).permute(0, 3, 1, 2).contiguous())  # (N, 3, 32, 32)


class ImageFolderDataModule(ImageDataModule):
    """Every image under ``root`` (flat or nested folders), RGB, centre-cropped, resized to
    ``image_size`` x ``image_size`` and scaled to [-1, 1].

    CelebA 64x64 (PAPER.md §3.4): ``root`` = ``img_align_celeba`` (178x218 JPEGs), ``crop=108``
    (the usual DCGAN centre crop of the face), ``image_size=64``, ``holdout=5000``.

    Arguments:
        root: Folder of images; nothing is read at construction.
        image_size: Side of the square output images.
        crop: Side of the centre crop taken before resizing; None crops the largest centred
            square after resizing the shorter side to ``image_size``.
        holdout: Number of images, last in sorted order, left out (paper: 5,000 for CelebA).
        batch_size: Real images per iteration (paper: 512).
        num_workers: DataLoader workers that decode images; None: min(4, the CPUs this process may use).
        seed: Seed of the data stream; None draws it from the global RNG at setup.
        bad_files: What setup does with a file that has an image extension but is not a readable
            image: ``"error"`` (stop, naming it) or ``"skip"`` (leave it out; the count and the
            first names are warned, the paths kept in ``skipped_files``). Files with other
            extensions are not read.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 64,  # PAPER.md §3.4
        crop: int | None = None,
        holdout: int = 0,
        batch_size: int = 512,  # PAPER.md §2.2
        num_workers: int | None = None,
        seed: int | None = None,
        bad_files: Literal["error", "skip"] = "error",
    ):
        if num_workers is None:  # decoding JPEGs is the bottleneck; more workers than CPUs only contend
            num_workers = min(4, available_cpus())
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if bad_files not in ("error", "skip"):
            raise ValueError(f"bad_files must be 'error' or 'skip', got {bad_files!r}")
        self.bad_files, self.skipped_files = bad_files, []
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be an integer >= 1, got {image_size!r}")
        if crop is not None and (not isinstance(crop, int) or crop < 1):
            raise ValueError(f"crop must be None or an integer >= 1, got {crop!r}")
        if not isinstance(holdout, int) or holdout < 0:
            raise ValueError(f"holdout must be an integer >= 0, got {holdout!r}")
        self.root, self.image_size, self.crop, self.holdout = str(root), image_size, crop, holdout
        self.data_shape = (3, image_size, image_size)

    def transform(self) -> transforms.Compose:
        crop = [transforms.CenterCrop(self.crop)] if self.crop is not None else []
        return transforms.Compose(
            [
                *crop,
                transforms.Resize(self.image_size),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
                transforms.Normalize([0.5] * 3, [0.5] * 3),  # [0, 1] -> [-1, 1]
            ]
        )

    def load_dataset(self) -> Dataset:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"root={self.root!r} is not a folder; point root at a folder of images")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        bad = unreadable_images(files)
        if bad and self.bad_files == "error":
            raise ValueError(
                f"{str(bad[0][0])!r} is not a readable image ({bad[0][1]}); {len(bad)} such files under "
                f"root={self.root!r}. Remove them or set bad_files='skip' (--data.init_args.bad_files=skip)"
            )
        if bad:
            skipped = {path for path, _ in bad}
            files = [path for path in files if path not in skipped]
            self.skipped_files = [str(path) for path, _ in bad]
            rank_zero_warn(
                f"skipped {len(bad)} unreadable image files under root={self.root!r}: {self.skipped_files[:3]}"
            )
        if not files:
            raise FileNotFoundError(
                f"root={self.root!r} holds no image files ({', '.join(IMG_EXTENSIONS)}); "
                "point root at a folder of images"
            )
        if len(files) <= self.holdout:
            raise ValueError(
                f"holdout={self.holdout} leaves none of the {len(files)} images under root={self.root!r} to train on "
                f"(set --data.init_args.holdout to at most {len(files) - 1}, e.g. 0 for a folder of your own images)"
            )
        return ImageFiles(files[: len(files) - self.holdout], self.transform())
