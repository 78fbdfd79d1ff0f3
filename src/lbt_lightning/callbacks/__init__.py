"""Thin callbacks: pl_module.sample_indexed(indices) -> metric or plot -> logger."""

from lbt_lightning.callbacks.budget import CoverageBudget
from lbt_lightning.callbacks.checkpoint import IterationCheckpoint
from lbt_lightning.callbacks.estimator_fit import EstimatorFit
from lbt_lightning.callbacks.evaluation import SampleEvaluator
from lbt_lightning.callbacks.fid import ImageQuality
from lbt_lightning.callbacks.periodic import EveryNIterations
from lbt_lightning.callbacks.progress import IterationProgressBar, MetricsTable
from lbt_lightning.callbacks.sample_grid import SampleGrid
from lbt_lightning.callbacks.sample_metrics import ModeCoverageCallback
from lbt_lightning.callbacks.sample_plots import ScatterPlot
from lbt_lightning.callbacks.sample_writer import SampleWriter
from lbt_lightning.callbacks.stacked_mnist import StackedMNISTModesCallback

__all__ = [
    "CoverageBudget",
    "EstimatorFit",
    "EveryNIterations",
    "ImageQuality",
    "IterationCheckpoint",
    "IterationProgressBar",
    "MetricsTable",
    "ModeCoverageCallback",
    "SampleEvaluator",
    "SampleGrid",
    "SampleWriter",
    "ScatterPlot",
    "StackedMNISTModesCallback",
]
