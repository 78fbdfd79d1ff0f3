"""The paper's estimator: an MLP VAE whose ELBO stands in for log p_φ(x) (PAPER.md §3)."""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.networks.mlp import MLP, Activation

LIKELIHOODS = ("gaussian", "bernoulli")
OUTPUTS = ("identity", "tanh")


class VAE(DensityEstimator):
    """Variational auto-encoder with an MLP encoder and decoder.

    ``log_prob`` returns the per-sample ELBO, a *lower bound* on log p_φ(x), estimated with a
    single reparameterised sample and an analytic KL to N(0, I); the reconstruction
    log-likelihood is summed over all data dimensions.

    Arguments:
        data_shape: Shape of one sample, e.g. ``[2]`` or ``[3, 28, 28]``.
        latent_dim: Size of the latent code.
        hidden: Encoder widths; the decoder uses them reversed.
        activation: Hidden non-linearity.
        likelihood: ``"gaussian"`` with fixed variance ``exp(x_log_var)``, or ``"bernoulli"``
            on decoder logits (targets may be continuous in [0, 1]).
        output: Decoder mean transform for the Gaussian likelihood: ``"identity"`` (toy) or
            ``"tanh"`` (images in [-1, 1]).
        x_log_var: Fixed log-variance of the Gaussian likelihood. Toy: log(1e-3); images: -1
            (the paper's code never trains it, PAPER.md §3.3).

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114.

    Example:
        >>> vae = VAE(data_shape=[2], latent_dim=4, hidden=[8])
        >>> vae.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (2,),
        latent_dim: int = 32,  # PAPER.md §3.1
        hidden: Sequence[int] = (128, 128),  # PAPER.md §3.1
        activation: Activation = "tanh",
        likelihood: Literal["gaussian", "bernoulli"] = "gaussian",
        output: Literal["identity", "tanh"] = "identity",
        x_log_var: float = math.log(1e-3),  # PAPER.md §3.1: fixed variance 0.001
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if likelihood == "bernoulli" and output != "identity":
            raise ValueError("output must be 'identity' with likelihood='bernoulli' (logits)")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.data_shape = tuple(data_shape)
        self.in_shape = self.data_shape
        dim = math.prod(self.data_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.output = output
        self.x_log_var = float(x_log_var)
        self.encoder = MLP(dim, 2 * latent_dim, hidden, activation)
        self.decoder = MLP(latent_dim, dim, list(hidden)[::-1], activation)

    @property
    def support(self) -> tuple[float, float] | None:
        """(0, 1) for the Bernoulli likelihood, whose log-likelihood has no upper bound outside it."""
        return (0.0, 1.0) if self.likelihood == "bernoulli" else None

    def log_prob(self, x: Tensor) -> Tensor:
        """Per-sample ELBO (a lower bound on log p_φ(x)), shape (B,)."""
        x = x.flatten(1)  # (B, D)
        mu, log_var = self.encoder(x).chunk(2, dim=-1)  # (B, latent) each
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        out = self.decoder(z)  # (B, D)
        kl = 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(-1)
        return self._log_likelihood(x, out) - kl

    def _log_likelihood(self, x: Tensor, out: Tensor) -> Tensor:
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        mean = torch.tanh(out) if self.output == "tanh" else out
        const = -0.5 * (math.log(2 * math.pi) + self.x_log_var)
        return (const - 0.5 * (x - mean).square() / math.exp(self.x_log_var)).sum(-1)
