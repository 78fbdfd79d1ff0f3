"""Scatter plots of 2-D generator samples over the mode centres."""

import torch
from matplotlib.figure import Figure
from torch import Tensor

from lbt_lightning.callbacks.periodic import EveryNIterations, log_figure, output_dir


def scatter_figure(samples: Tensor, centers: Tensor | None = None, title: str = "", ax=None) -> Figure:
    """Samples as small blue dots, mode centres as red crosses; returns the figure.

    A new figure is a ``matplotlib.figure.Figure``, not a pyplot one: saving it needs no GUI
    backend and it never opens a window, so neither importing this module nor plotting changes
    the backend of a notebook or script (and nothing has to be closed).
    """
    fig = None
    if ax is None:
        fig = Figure(figsize=(4, 4))
        ax = fig.subplots()
    samples = samples.detach().cpu()
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color="tab:blue", rasterized=True)
    if centers is not None:
        centers = centers.cpu()
        ax.scatter(centers[:, 0], centers[:, 1], s=30, marker="x", color="tab:red")
        span = float(centers.abs().max()) * 1.5 + 0.1
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title)
    return fig if fig is not None else ax.figure


class ScatterPlot(EveryNIterations):
    """Every N iterations, a scatter of ``num_samples`` generator samples over the datamodule's
    ``centers``: saved as ``<log dir>/samples/scatter_<iteration>.png`` and sent to the logger.

    Arguments:
        every_n_iterations: Plot period.
        num_samples: Points per plot.
    """

    def __init__(self, every_n_iterations: int = 500, num_samples: int = 2500):
        super().__init__(every_n_iterations)
        self.num_samples = num_samples
        self.last_path = None

    def evaluate(self, trainer, pl_module, iteration: int) -> None:
        samples = pl_module.sample_indexed(torch.arange(self.num_samples))
        if not trainer.is_global_zero:
            return
        centers = getattr(trainer.datamodule, "centers", None)
        fig = scatter_figure(samples, centers, title=f"{type(pl_module).__name__}, iteration {iteration}")
        self.last_path = output_dir(trainer, "samples") / f"scatter_{iteration:07d}.png"
        log_figure(trainer, "val/samples", fig, self.last_path, step=iteration)
