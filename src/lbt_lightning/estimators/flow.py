"""A normalizing flow from zuko, wrapped so that its exact log-density is computed eagerly."""

import math
from collections.abc import Sequence
from typing import Literal

import zuko
from torch import Tensor

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.networks.mlp import ACTIVATIONS, Activation

FLOWS = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF}


class Flow(DensityEstimator):
    """Exact-likelihood normalizing flow p_φ(x) built on :mod:`zuko` (MAF or NSF).

    zuko flows are *lazy*: ``self.flow()`` returns a distribution whose transforms call the
    hyper-networks only when ``log_prob`` is evaluated. The unroll substitutes parameters with
    ``torch.func.functional_call`` for the duration of ``forward`` only, so the distribution is
    built and evaluated here, inside ``log_prob``; a distribution returned to the caller and
    evaluated later would silently use the original parameters.

    Arguments:
        data_shape: Shape of one sample; it is flattened to D = prod(data_shape) features.
        flow: ``"nsf"`` (rational-quadratic splines, expressive enough for multimodal data) or
            ``"maf"`` (affine autoregressive transforms).
        transforms: Number of autoregressive transforms (feature order alternates).
        hidden: Widths of each transform's masked hyper-network.
        activation: Hyper-network non-linearity; a smooth one keeps ∂²log p/∂φ∂x, the teaching
            signal, continuous.
        bins: Spline bins per feature (``nsf`` only).
        data_scale: Samples are divided by it before the flow (and the log-Jacobian is added
            back). NSF splines act on [-5, 5] and are the identity outside, where log p no longer
            depends on φ: generator samples beyond ``5 * data_scale`` get no teaching signal and
            can drift away, so leave room for the generator's spread, not only for the data.

    References:
        Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", arXiv:1705.07057.
        Durkan et al., "Neural Spline Flows", arXiv:1906.04032.
        Rozet et al., "Zuko: Normalizing flows in PyTorch", doi:10.5281/zenodo.7625672.

    Example:
        >>> import torch
        >>> flow = Flow(data_shape=[2], hidden=[16])
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (2,),
        flow: Literal["maf", "nsf"] = "nsf",
        transforms: int = 3,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "tanh",
        bins: int = 8,
        data_scale: float = 1.0,
    ):
        super().__init__()
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {sorted(FLOWS)}, got {flow!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(transforms, int) or transforms < 1:
            raise ValueError(f"transforms must be an integer >= 1, got {transforms!r}")
        if not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be a non-empty list of integers >= 1, got {list(hidden)}")
        if not data_scale > 0:
            raise ValueError(f"data_scale must be > 0, got {data_scale!r}")
        self.data_shape = tuple(data_shape)
        self.in_shape = self.data_shape
        dim = math.prod(self.data_shape)
        self.data_scale = float(data_scale)
        self.log_det_scale = dim * math.log(self.data_scale)
        kwargs = {"bins": bins} if flow == "nsf" else {}
        self.flow = FLOWS[flow](
            features=dim,
            transforms=transforms,
            hidden_features=list(hidden),
            activation=ACTIVATIONS[activation],
            **kwargs,
        )

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact per-sample log-density, shape (B,)."""
        # Build and evaluate the lazy distribution here, while functional_call's parameters are in place.
        return self.flow().log_prob(x.flatten(1) / self.data_scale) - self.log_det_scale
