"""Explicit density estimators p_φ(x) that a generator can teach."""

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.estimators.flow import Flow
from lbt_lightning.estimators.mixture import GaussianMixture
from lbt_lightning.estimators.vae import VAE

__all__ = ["VAE", "DensityEstimator", "Flow", "GaussianMixture"]
