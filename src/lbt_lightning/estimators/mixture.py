"""A learnable Gaussian mixture: an estimator with an exact log-density (not a bound)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbt_lightning.estimators.base import DensityEstimator


class GaussianMixture(DensityEstimator):
    """Mixture of ``components`` diagonal Gaussians with learnable means, scales and weights.

    ``log_prob`` is the exact log-density ``log Σ_k w_k N(x; μ_k, diag σ_k²)``, computed with
    ``logsumexp``. Scales are ``min_scale + exp(s)``: a component shrinking onto a single sample
    would otherwise send the likelihood, and the unrolled gradients, to infinity.

    Arguments:
        data_shape: Shape of one sample; it is flattened to D = prod(data_shape) dimensions.
        components: Number of mixture components.
        init_scale: Standard deviation of the random initial means and initial component scale.
        min_scale: Floor on every component's standard deviation, > 0.

    References:
        Bishop, "Pattern Recognition and Machine Learning", §9.2 (2006).

    Example:
        >>> gm = GaussianMixture(data_shape=[2], components=4)
        >>> gm.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (2,),
        components: int = 16,
        init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ):
        super().__init__()
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be an integer >= 1, got {components!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        if not 0 < min_scale < init_scale:
            raise ValueError(f"min_scale must be in (0, init_scale={init_scale}), got {min_scale!r}")
        self.data_shape = tuple(data_shape)
        self.in_shape = self.data_shape
        dim = math.prod(self.data_shape)
        self.components, self.min_scale = components, float(min_scale)
        self.means = nn.Parameter(init_scale * torch.randn(components, dim))
        self.log_scales = nn.Parameter(torch.full((components, dim), math.log(init_scale - min_scale)))
        self.logits = nn.Parameter(torch.zeros(components))

    def scales(self) -> Tensor:
        """Component standard deviations, shape (components, D)."""
        return self.min_scale + self.log_scales.exp()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact per-sample log-density, shape (B,)."""
        x = x.flatten(1)[:, None, :]  # (B, 1, D) against (components, D)
        scales = self.scales()
        z = (x - self.means) / scales
        log_normal = -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1) - scales.log().sum(-1)  # (B, components)
        return torch.logsumexp(F.log_softmax(self.logits, dim=0) + log_normal, dim=-1)
