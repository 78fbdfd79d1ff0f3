"""LightningModules, one per algorithm."""

from lbt_lightning.methods.base import GenerativeModule
from lbt_lightning.methods.gan import GAN
from lbt_lightning.methods.lbt import LBT
from lbt_lightning.methods.lbt_gan import LBTGAN
from lbt_lightning.methods.unrolled_gan import UnrolledGAN

__all__ = ["GAN", "LBT", "LBTGAN", "GenerativeModule", "UnrolledGAN"]
