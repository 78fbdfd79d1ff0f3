"""``lightning predict``: generator samples to a .pt or .npz file, and a PNG of them."""

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lbt_lightning.callbacks.periodic import output_dir
from lbt_lightning.callbacks.sample_grid import image_range
from lbt_lightning.callbacks.sample_plots import scatter_figure

FORMATS = (".pt", ".npz")


class SampleWriter(BasePredictionWriter):
    """Writes the ``num_samples`` samples of ``lightning predict`` (sample i from noise seeded with i,
    see ``GenerativeModule.sample_indexed``; the datamodule's ``predict_dataloader`` serves the
    indices, split over DDP ranks) to ``path``, in index order, and a PNG with the same stem:
    a scatter over the datamodule's ``centers`` for 2-D samples, a grid of the first ``grid_size``
    for images (B, 1 or 3, H, W). The CLI adds one with these defaults to ``predict`` when the
    config lists none.

    ``.pt`` holds the tensor (``torch.load``); ``.npz`` holds the array ``samples`` (``numpy.load``).

    Arguments:
        num_samples: N, the number of samples; the default 1,000 is for a look (a 64x64 RGB
            set is 49 MB of float32); the metrics' protocols use 2,500 to 50,000.
        path: Output file, ``.pt`` or ``.npz``; None: ``<log dir>/predictions/samples.pt``.
        grid_size: Images in the PNG grid (8 per row).
        value_range: Image value range for the grid; None: the datamodule's ``value_range``.

    Example:
        ``lightning predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt
        --trainer.callbacks+=lbt_lightning.callbacks.SampleWriter --trainer.callbacks.num_samples=10000
        --trainer.callbacks.path=samples.npz``
    """

    def __init__(
        self,
        num_samples: int = 1_000,
        path: str | None = None,
        grid_size: int = 64,
        value_range: tuple[float, float] | None = None,
    ):
        super().__init__(write_interval="batch")
        for name, value in (("num_samples", num_samples), ("grid_size", grid_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if path is not None and Path(path).suffix not in FORMATS:
            raise ValueError(f"path must end in one of {FORMATS}, got {path!r}")
        self.num_samples, self.path, self.grid_size, self.value_range = num_samples, path, grid_size, value_range
        self._indices: list[Tensor] = []
        self._samples: list[Tensor] = []
        self.written: tuple[Path, Path] | None = None

    def num_samples_for(self, stage: str) -> int | None:
        return self.num_samples if stage == "predict" else None

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._indices, self._samples = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self._indices.append(batch.cpu())
        self._samples.append(prediction.detach().cpu())

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        indices, samples = torch.cat(self._indices), torch.cat(self._samples)
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            parts = [None] * trainer.world_size
            dist.all_gather_object(parts, (indices, samples))
            indices, samples = (torch.cat(t) for t in zip(*parts))
        self._indices, self._samples = [], []
        if trainer.is_global_zero:
            self.write(trainer, samples[indices.argsort()])

    def write(self, trainer: pl.Trainer, samples: Tensor) -> None:
        path = Path(self.path) if self.path is not None else output_dir(trainer, "predictions") / "samples.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            np.savez(path, samples=samples.numpy())
        else:
            torch.save(samples, path)
        png = path.with_suffix(".png")
        if samples.ndim == 2 and samples.shape[1] == 2:
            centers = getattr(trainer.datamodule, "centers", None)
            fig = scatter_figure(
                samples, centers, title=f"{type(trainer.lightning_module).__name__}, {len(samples)} samples"
            )
            fig.savefig(png, dpi=100, bbox_inches="tight")
        elif samples.ndim == 4 and samples.shape[1] in (1, 3):
            images = samples[: self.grid_size].float()
            grid = make_grid(images, nrow=8, normalize=True, value_range=self._range(trainer))
            save_image(grid, png)
        else:
            png = None
        self.written = (path, png)
        rank_zero_info(f"SampleWriter: {len(samples)} samples of shape {tuple(samples.shape[1:])} -> {path}, {png}")

    def _range(self, trainer: pl.Trainer) -> tuple[float, float]:
        if self.value_range is not None:
            return tuple(self.value_range)
        return image_range(trainer.datamodule, "SampleWriter")
