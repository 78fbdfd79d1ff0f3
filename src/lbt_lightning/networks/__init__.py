"""Generators and discriminators: plain ``nn.Module``s that know nothing about training."""

from lbt_lightning.networks.classifier import DigitClassifier
from lbt_lightning.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from lbt_lightning.networks.mlp import MLP, MLPDiscriminator, MLPGenerator
from lbt_lightning.networks.pacgan import MaxoutDiscriminator, PacGANGenerator
from lbt_lightning.networks.smnist import SMNISTDiscriminator, SMNISTGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DigitClassifier",
    "MLP",
    "MLPDiscriminator",
    "MLPGenerator",
    "MaxoutDiscriminator",
    "PacGANGenerator",
    "SMNISTDiscriminator",
    "SMNISTGenerator",
]
