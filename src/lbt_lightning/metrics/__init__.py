"""torchmetrics Metrics with sum-reduced states (correct under DDP)."""

from lbt_lightning.metrics.mode_coverage import ModeCoverage
from lbt_lightning.metrics.stacked_mnist import StackedMNISTModes

__all__ = ["ModeCoverage", "StackedMNISTModes"]
