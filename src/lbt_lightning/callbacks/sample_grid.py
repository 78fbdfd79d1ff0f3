"""Image grids of generator samples, saved as PNG and sent to the logger."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from lbt_lightning.callbacks.periodic import EveryNIterations, output_dir
from lbt_lightning.data.value_range import data_value_range


def image_range(datamodule, user: str) -> tuple[float, float]:
    """The datamodule's bounded ``value_range``, for showing its images; raises naming ``user``."""
    value_range = data_value_range(datamodule, user)
    if value_range is None:
        raise ValueError(
            f"{user}: {type(datamodule).__name__}'s values are unbounded (value_range None); set {user}'s value_range"
        )
    return value_range


class SampleGrid(EveryNIterations):
    """Every N iterations and at the end, a grid of the first ``num_samples`` images of ``pl_module.sample_indexed``:
    ``<log dir>/samples/grid_<iteration>.png``, W&B ``log_image`` and TensorBoard ``add_image``
    (CSV keeps the PNG only). Works for any image generator with output (B, C, H, W), C in {1, 3}.

    Arguments:
        every_n_iterations: Period.
        num_samples: Images per grid.
        nrow: Images per grid row.
        value_range: The range mapped to [0, 1] (and clipped); None: the datamodule's
            ``value_range``, (0, 1) for Stacked MNIST, (-1, 1) for CIFAR-10 and CelebA.
        key: Logger key.

    Example:
        >>> SampleGrid(every_n_iterations=1000, value_range=(-1.0, 1.0))  # doctest: +ELLIPSIS
        <...SampleGrid object at ...>
    """

    def __init__(
        self,
        every_n_iterations: int = 500,
        num_samples: int = 64,
        nrow: int = 8,
        value_range: tuple[float, float] | None = None,
        key: str = "val/samples",
    ):
        super().__init__(every_n_iterations)
        for name, value in (("num_samples", num_samples), ("nrow", nrow)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if value_range is not None and not value_range[0] < value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, or None, got {tuple(value_range)}")
        self.num_samples, self.nrow, self.key = num_samples, nrow, key
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.last_path = None

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, iteration: int) -> None:
        samples = pl_module.sample_indexed(torch.arange(self.num_samples))
        if samples.ndim != 4 or samples.shape[1] not in (1, 3):
            raise ValueError(f"SampleGrid needs images (B, 1 or 3, H, W), got samples of shape {tuple(samples.shape)}")
        if not trainer.is_global_zero:
            return
        value_range = self.value_range or image_range(trainer.datamodule, "SampleGrid")
        grid = make_grid(samples.detach().float().cpu(), nrow=self.nrow, normalize=True, value_range=value_range)
        self.last_path = output_dir(trainer, "samples") / f"grid_{iteration:07d}.png"
        save_image(grid, self.last_path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=self.key, images=[str(self.last_path)], step=iteration)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.key, grid, global_step=iteration)
