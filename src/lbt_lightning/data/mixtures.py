"""2-D Gaussian mixtures (ring and grid), sampled fresh every batch (PAPER.md §5.1)."""

import math

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from lbt_lightning.data.evaluation import SampleIndexLoaders


def batch_seed(seed: int, rank: int, index: int) -> int:
    """The torch seed of batch ``index`` on DDP ``rank`` of a stream seeded with ``seed``.

    ``numpy.random.SeedSequence((seed, rank, index)).generate_state(1, numpy.uint64)[0] >> 1``:
    SeedSequence's mixing is a fixed, documented algorithm (not Python's ``hash``, whose value
    for tuples may change between Python versions), it decorrelates neighbouring keys, and the
    shift keeps the result below 2**63 as ``torch.Generator.manual_seed`` requires.

    Example:
        >>> batch_seed(0, 0, 0) == batch_seed(0, 0, 0) != batch_seed(0, 0, 1)
        True
    """
    state = np.random.SeedSequence((seed, rank, index)).generate_state(1, np.uint64)
    return int(state[0]) >> 1


class MixtureStream(IterableDataset):
    """Endless batches from an equal-weight isotropic Gaussian mixture.

    Batch i is a pure function of (seed, rank, i), so a run resumed at iteration N continues
    with exactly the batches an uninterrupted run would have seen. It is drawn from a
    ``torch.Generator`` seeded with :func:`batch_seed`; component indices first
    (``torch.randint``), then the unit noise (``torch.randn``).
    """

    def __init__(self, centers: Tensor, sigma: float, batch_size: int, seed: int, start: int = 0):
        self.centers, self.sigma, self.batch_size = centers, sigma, batch_size
        self.seed, self.start = seed, start

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        rng = torch.Generator()
        index = self.start
        while True:
            rng.manual_seed(batch_seed(self.seed, rank, index))
            idx = torch.randint(len(self.centers), (self.batch_size,), generator=rng)
            noise = torch.randn(self.batch_size, 2, generator=rng)
            yield self.centers[idx] + self.sigma * noise
            index += 1


class MixtureDataModule(SampleIndexLoaders, pl.LightningDataModule):
    """Base for 2-D mixtures: exposes ``centers`` (M, 2), ``sigma`` and ``data_shape`` for metrics.

    Arguments:
        sigma: Standard deviation of every component, > 0.
        batch_size: Real samples per iteration.
        seed: Seed of the data stream, an integer >= 0; None draws it from the global torch
            RNG at setup, so ``seed_everything`` makes runs reproducible.
    """

    data_shape = (2,)
    value_range = None  # Gaussian components: any real value

    def __init__(self, *, sigma: float, batch_size: int, seed: int | None = None):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
        self.sigma, self.batch_size, self.seed = float(sigma), batch_size, seed
        self._stream_seed = seed

    @property
    def centers(self) -> Tensor:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        # Drawn before a checkpoint restores the RNG, so a resumed run gets the same stream.
        if self._stream_seed is None:
            self._stream_seed = int(torch.randint(2**62, ()))

    def train_dataloader(self) -> DataLoader:
        if self._stream_seed is None:
            self.setup("fit")
        start = self.trainer.global_step if self.trainer is not None else 0  # mid-stream after a resume
        stream = MixtureStream(self.centers, self.sigma, self.batch_size, self._stream_seed, start)
        # An own generator: creating the iterator would otherwise draw from the global RNG and
        # shift the model's random stream in a resumed run.
        return DataLoader(stream, batch_size=None, generator=torch.Generator())


class RingDataModule(MixtureDataModule):
    """``num_modes`` Gaussians evenly on a circle: means (r sin θ_i, r cos θ_i), θ_i = 2πi/M.

    Defaults are the paper's ring (r = 1, σ = 0.1); VEEGAN/PacGAN use r = 2, σ = 0.02.

    Arguments:
        num_modes: M >= 1.
        radius: r > 0.
        sigma: Component standard deviation.
        batch_size: Real samples per iteration.
        seed: Data stream seed (None: drawn from the global RNG at setup).
    """

    def __init__(
        self,
        num_modes: int = 8,  # PAPER.md §5.1
        radius: float = 1.0,  # PAPER.md §5.1 README: -mog_scale 1.0
        sigma: float = 0.1,  # PAPER.md §5.1 README: -mog_std 0.1
        batch_size: int = 512,  # PAPER.md §2.2
        seed: int | None = None,
    ):
        super().__init__(sigma=sigma, batch_size=batch_size, seed=seed)
        if not isinstance(num_modes, int) or num_modes < 1:
            raise ValueError(f"num_modes must be an integer >= 1, got {num_modes!r}")
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius!r}")
        self.num_modes, self.radius = num_modes, float(radius)

    @property
    def centers(self) -> Tensor:
        angles = 2 * math.pi * torch.arange(self.num_modes, dtype=torch.float64) / self.num_modes
        return (self.radius * torch.stack([angles.sin(), angles.cos()], dim=1)).float()


class GridDataModule(MixtureDataModule):
    """A ``num_modes`` = n×n grid of Gaussians centred on the origin with the given spacing.

    Defaults are the paper's grid (10×10, spacing 0.2, σ = 0.01, so means in {-0.9..0.9}²);
    the VEEGAN/PacGAN grid is 25 modes, spacing 2 ({-4,-2,0,2,4}²), σ = 0.05.

    Arguments:
        num_modes: A perfect square n² >= 1.
        spacing: Distance between neighbouring means, > 0.
        sigma: Component standard deviation.
        batch_size: Real samples per iteration.
        seed: Data stream seed (None: drawn from the global RNG at setup).
    """

    def __init__(
        self,
        num_modes: int = 100,  # PAPER.md §5.1 README: -n_mixture 100
        spacing: float = 0.2,  # PAPER.md §5.1 README: -mog_scale 0.2
        sigma: float = 0.01,  # PAPER.md §5.1 README: -mog_std 0.01
        batch_size: int = 2048,  # PAPER.md §2.2 grid
        seed: int | None = None,
    ):
        super().__init__(sigma=sigma, batch_size=batch_size, seed=seed)
        side = math.isqrt(num_modes) if isinstance(num_modes, int) and num_modes > 0 else 0
        if side < 1 or side * side != num_modes:
            raise ValueError(f"num_modes must be a perfect square >= 1 (4, 9, ..., 100), got {num_modes!r}")
        if not spacing > 0:
            raise ValueError(f"spacing must be > 0, got {spacing!r}")
        self.num_modes, self.spacing, self.side = num_modes, float(spacing), side

    @property
    def centers(self) -> Tensor:
        axis = (torch.arange(self.side, dtype=torch.float64) - (self.side - 1) / 2) * self.spacing
        x, y = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([x.flatten(), y.flatten()], dim=1).float()
