"""Mode coverage of a 2-D mixture: modes hit, % high-quality samples, KL to uniform."""

import torch
from torch import Tensor
from torchmetrics import Metric


class ModeCoverage(Metric):
    """The VEEGAN/PacGAN protocol (PAPER.md §5.2).

    Each sample is assigned to its nearest centre; it is *high quality* (HQ) if it lies within
    ``k·σ`` of it. A mode is covered when at least ``min_count`` HQ samples fall on it (1: VEEGAN;
    20: PacGAN-style). KL is KL(p̂ ‖ uniform) of the HQ samples' mode histogram, ``inf`` when no
    sample is HQ. A sample with a NaN or inf coordinate is never HQ and is counted in
    ``nonfinite`` (a generator that diverges shows up as low HQ, not as a crash). With no
    samples, ``hq`` and ``kl`` are NaN.

    Arguments:
        centers: Mode means, shape (M, D).
        sigma: Component standard deviation.
        k: HQ radius in units of σ.
        min_count: HQ samples a mode needs to count as covered.

    Example:
        >>> metric = ModeCoverage(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), sigma=0.1)
        >>> metric.update(torch.tensor([[0.05, 0.0], [2.0, 2.0]]))
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'modes': 1.0, 'hq': 0.5, 'kl': 0.693, 'nonfinite': 0.0}
    """

    full_state_update = False

    def __init__(self, centers: Tensor, sigma: float, k: float = 3.0, min_count: int = 1, **kwargs):
        super().__init__(**kwargs)
        if centers.ndim != 2 or len(centers) < 1:
            raise ValueError(f"centers must have shape (M >= 1, D), got {tuple(centers.shape)}")
        for name, value in (("sigma", sigma), ("k", k)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        self.register_buffer("centers", centers.float().clone())
        self.radius, self.min_count = k * sigma, min_count
        self.add_state("counts", torch.zeros(len(centers), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nonfinite", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        samples = samples.float().flatten(1)
        finite = torch.isfinite(samples).all(dim=1)
        self.nonfinite += (~finite).sum()
        dist = torch.cdist(torch.where(finite[:, None], samples, 0.0), self.centers)  # (N, M)
        nearest_dist, nearest = dist.min(dim=1)
        hq = (nearest_dist <= self.radius) & finite
        self.counts += torch.bincount(nearest[hq], minlength=len(self.centers))
        self.total += len(samples)

    def compute(self) -> dict[str, Tensor]:
        hq_total = self.counts.sum()
        modes = (self.counts >= self.min_count).sum().float()
        nonfinite = self.nonfinite.float()
        if self.total == 0:
            nan = torch.tensor(float("nan"))
            return {"modes": modes, "hq": nan, "kl": nan, "nonfinite": nonfinite}
        hq = hq_total.float() / self.total
        if hq_total == 0:
            return {"modes": modes, "hq": hq, "kl": torch.tensor(float("inf")), "nonfinite": nonfinite}
        p = self.counts.double() / hq_total
        kl = torch.where(p > 0, p * torch.log(p * len(p)), torch.zeros_like(p)).sum()
        return {"modes": modes, "hq": hq, "kl": kl.float(), "nonfinite": nonfinite}
