"""LightningDataModules that yield real batches."""

from lbt_lightning.data.images import CIFAR10DataModule, ImageDataModule, ImageFolderDataModule
from lbt_lightning.data.mixtures import GridDataModule, MixtureDataModule, RingDataModule
from lbt_lightning.data.stacked_mnist import StackedMNISTDataModule
from lbt_lightning.data.synthetic import SyntheticImages

__all__ = [
    "CIFAR10DataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "GridDataModule",
    "MixtureDataModule",
    "RingDataModule",
    "StackedMNISTDataModule",
    "SyntheticImages",
]
