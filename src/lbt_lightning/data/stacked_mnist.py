"""Stacked MNIST: three MNIST digits as the RGB channels of one image, 1000 modes (PAPER.md §3.2, §5.1)."""

import gzip
import os
import struct
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import MNIST
from torchvision.datasets.utils import calculate_md5

from lbt_lightning.data.images import ImageDataModule

# The MD5s torchvision checks (MNIST.resources); it knows none for the unpacked files.
MD5 = dict(MNIST.resources)
SPLITS = {"train": "train", "test": "t10k"}
DIGITS = ("all", "train", "test")
MAGIC = {"images": 2051, "labels": 2049}  # IDX header: ubyte data, 3 or 1 dimensions


def _find(root: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``root`` or torchvision's layout ``root/MNIST/raw``; .gz first (it has an MD5)."""
    candidates = [d / f for d in (root, root / "MNIST" / "raw") for f in (name + ".gz", name)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MNIST file {name}(.gz) not found; looked for {', '.join(map(str, candidates))}. "
        "Pass download=True (needs internet) or point root at a folder with the IDX files."
    )


def read_idx(path: Path, kind: Literal["images", "labels"]) -> Tensor:
    """Read an MNIST IDX file (optionally gzipped), checking its MD5 when torchvision knows one, its
    header and its length, so a corrupt or truncated file fails with an error that names it."""
    if path.name in MD5 and (actual := calculate_md5(path)) != MD5[path.name]:
        raise ValueError(
            f"{path}: MD5 {actual} does not match torchvision's {MD5[path.name]}; the file is corrupt or "
            "truncated. Delete it and download it again (download=True)."
        )
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot decompress ({error}); the file is corrupt") from error
    ndim = 3 if kind == "images" else 1
    header = 4 * (ndim + 1)
    if len(data) < header or struct.unpack(">I", data[:4])[0] != MAGIC[kind]:
        raise ValueError(f"{path}: not an MNIST {kind} IDX file (bad header)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + torch.Size(shape).numel():
        raise ValueError(f"{path}: {len(data) - header} data bytes, header says {shape}; the file is truncated")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*shape)


def load_mnist(root: str | os.PathLike, split: Literal["train", "test"]) -> tuple[Tensor, Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one MNIST split read from ``root``."""
    prefix = SPLITS[split]
    images = read_idx(_find(Path(root), f"{prefix}-images-idx3-ubyte"), "images")
    labels = read_idx(_find(Path(root), f"{prefix}-labels-idx1-ubyte"), "labels").long()
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels


def download_mnist(root: str | os.PathLike) -> None:
    """Download the four MNIST .gz files with torchvision into ``root``. Everything goes to a temporary
    folder inside ``root`` first and each verified file is moved in with an atomic rename, so an
    interrupted download leaves nothing half-written behind."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        MNIST(tmp, download=True)  # checks each .gz against the same MD5s
        for name in MD5:
            src = Path(tmp) / "MNIST" / "raw" / name
            read_idx(src, "images" if "images" in name else "labels")
            os.replace(src, root / name)


class StackedMNIST(Dataset):
    """Fixed random triples of digits: image i has digit ``index[i, c]`` in channel c, values in [0, 1].

    Arguments:
        digits: MNIST images (M, 28, 28), uint8.
        digit_labels: Their classes (M,).
        num_samples: Number of triples N.
        seed: Seed of the triple indices.

    Attributes:
        index: (N, 3) digit indices.
        labels: (N,) mode ids ``c1 + 10·c2 + 100·c3`` in 0..999, c1 being channel 0's digit.
    """

    def __init__(self, digits: Tensor, digit_labels: Tensor, num_samples: int, seed: int):
        self.digits = digits
        self.index = torch.randint(len(digits), (num_samples, 3), generator=torch.Generator().manual_seed(seed))
        self.labels = (digit_labels[self.index] * torch.tensor([1, 10, 100])).sum(1)

    def __len__(self) -> int:
        return len(self.index)

    def images(self, idx: Tensor) -> Tensor:
        """Triples ``idx`` as float images (B, 3, 28, 28) in [0, 1]."""
        return self.digits[self.index[idx]].float() / 255.0

    def __getitem__(self, i: int) -> Tensor:
        return self.images(torch.tensor([i]))[0]

    def __getitems__(self, indices: list[int]) -> list[Tensor]:  # one gather per batch
        return list(self.images(torch.as_tensor(indices)))


class StackedMNISTDataModule(ImageDataModule):
    """Stacked MNIST from the raw IDX files (``*-idx3-ubyte``/``*-idx1-ubyte``, optionally .gz) in ``root``
    (or torchvision's ``root/MNIST/raw``), served as an endless, resumable stream of full batches.
    Files are read in ``prepare_data``/``setup`` only; ``dataset.labels`` holds the mode of each triple.

    Arguments:
        root: Folder with the MNIST files.
        download: Fetch missing or corrupt files with torchvision in ``prepare_data`` (needs internet).
        digits: Which digits make the triples: ``"all"`` 70,000 (the paper), ``"train"`` or ``"test"``.
        num_samples: Number of triples (paper: 128,000).
        triples_seed: Seed of the triple indices (paper: 12345).
        batch_size: Real images per iteration.
        num_workers: DataLoader workers (the digits are in memory: 0 is fastest).
        seed: Seed of the data stream; None draws it from the global torch RNG at setup.

    Example:
        >>> dm = StackedMNISTDataModule(root="data/mnist", digits="test")
        >>> dm.data_shape
        (3, 28, 28)
    """

    data_shape = (3, 28, 28)
    value_range = (0.0, 1.0)  # digit intensities / 255, as the classifier and the Bernoulli VAE take them
    num_modes = 1000

    def __init__(
        self,
        root: str = "data/mnist",
        download: bool = False,
        digits: Literal["all", "train", "test"] = "all",  # PAPER.md §3.2: train + valid + test
        num_samples: int = 128_000,  # PAPER.md §3.2
        triples_seed: int = 12345,  # PAPER.md §3.2: numpy seed of the triples
        batch_size: int = 512,  # PAPER.md §2.2
        num_workers: int = 0,
        seed: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if digits not in DIGITS:
            raise ValueError(f"digits must be one of {DIGITS}, got {digits!r}")
        if not isinstance(num_samples, int) or num_samples < batch_size:
            raise ValueError(f"num_samples must be an integer >= batch_size ({batch_size}), got {num_samples!r}")
        self.root, self.download, self.digits = str(root), download, digits
        self.num_samples, self.triples_seed = num_samples, triples_seed

    @property
    def splits(self) -> list[str]:
        return ["train", "test"] if self.digits == "all" else [self.digits]

    def prepare_data(self) -> None:
        if not self.download:
            return
        try:
            for split in self.splits:
                load_mnist(self.root, split)
        except (FileNotFoundError, ValueError):
            download_mnist(self.root)

    def load_dataset(self) -> StackedMNIST:
        parts = [load_mnist(self.root, split) for split in self.splits]
        digits, labels = (torch.cat(t) for t in zip(*parts))
        return StackedMNIST(digits, labels, self.num_samples, self.triples_seed)
