"""torchmetrics Metrics with sum-reduced states (correct under DDP)."""

from lbt_lightning.metrics.mode_coverage import ModeCoverage

__all__ = ["ModeCoverage"]
