"""Random images in the CIFAR-10 format: a download-free data set for timing and device checks."""

import torch
from torch.utils.data import Dataset

from lbt_lightning.data.images import ImageDataModule, UInt8Images


class SyntheticImages(ImageDataModule):
    """``num_images`` uniform random uint8 images, (channels, image_size, image_size) in [-1, 1],
    served like :class:`~lbt_lightning.data.CIFAR10DataModule` (an endless stream of batches).
    Nothing to learn from: for measuring iteration time and memory, and for tests.

    Arguments:
        image_size: Side of the square images (CIFAR-10: 32).
        channels: Image channels.
        num_images: Images held in memory (default: one CIFAR-10 batch of 512, to keep memory small).
        batch_size: Real images per iteration.
        num_workers: DataLoader workers.
        seed: Seed of the pixels and of the stream; None draws it from the global RNG at setup.

    Example:
        >>> dm = SyntheticImages(image_size=8, num_images=4, batch_size=2, seed=0)
        >>> dm.setup("fit")
        >>> next(iter(dm.train_dataloader())).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        num_images: int = 512,
        batch_size: int = 512,
        num_workers: int = 0,
        seed: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        for name, value in (("image_size", image_size), ("channels", channels), ("num_images", num_images)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.data_shape = (channels, image_size, image_size)
        self.num_images = num_images

    def load_dataset(self) -> Dataset:
        rng = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
        return UInt8Images(torch.randint(0, 256, (self.num_images, *self.data_shape), dtype=torch.uint8, generator=rng))
