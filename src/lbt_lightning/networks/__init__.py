"""Generators and discriminators: plain ``nn.Module``s that know nothing about training."""

from lbt_lightning.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from lbt_lightning.networks.mlp import MLP, MLPDiscriminator, MLPGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLP", "MLPDiscriminator", "MLPGenerator"]
