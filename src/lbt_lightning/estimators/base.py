"""The contract every density estimator fulfils."""

from abc import ABC, abstractmethod

from torch import Tensor, nn


class DensityEstimator(nn.Module, ABC):
    """An explicit density p_φ(x) that LBT fits to generator samples and unrolls.

    Subclasses implement one method, :meth:`log_prob`. ``forward`` is ``log_prob`` so that
    ``torch.func.functional_call(estimator, params, (x,))`` evaluates it at substituted
    parameters, which is how the unroll differentiates through optimizer steps. Rules:

    - compute the number eagerly inside ``log_prob`` (a lazy distribution object evaluated
      after ``functional_call`` returns would silently use the original parameters);
    - no in-place updates of parameters, no BatchNorm or other running-stat buffers;
    - set ``support = (low, high)`` when the likelihood holds on an interval only (a Bernoulli
      likelihood: ``(0, 1)``); training refuses data whose ``value_range`` is not inside it.

    Example:
        >>> import torch
        >>> class Gaussian(DensityEstimator):
        ...     def __init__(self, dim: int = 2):
        ...         super().__init__()
        ...         self.mean = nn.Parameter(torch.zeros(dim))
        ...     def log_prob(self, x):
        ...         return torch.distributions.Normal(self.mean, 1.0).log_prob(x).sum(-1)
        >>> Gaussian()(torch.zeros(3, 2)).shape
        torch.Size([3])
    """

    support: tuple[float, float] | None = None  # the values log_prob is a density of; None: all reals

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density (or a documented lower bound) of each sample.

        Arguments:
            x: A batch of samples, shape (B, *event_shape).

        Returns:
            Tensor of shape (B,).
        """

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)
