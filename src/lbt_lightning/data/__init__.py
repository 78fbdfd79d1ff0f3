"""LightningDataModules that yield real batches."""

from lbt_lightning.data.mixtures import GridDataModule, MixtureDataModule, RingDataModule

__all__ = ["GridDataModule", "MixtureDataModule", "RingDataModule"]
