"""PacGAN's 2-D networks: a dense ReLU + BatchNorm generator and a maxout discriminator.

Source: Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in generative adversarial
networks" (arXiv:1712.04086), code github.com/fjxmlzn/PacGAN,
``synthetic_data_experiments/2DGrid_GAN&PacGAN/{config,pacgan_task}.py``: z ∈ R² ~ N(0, I),
generator 4 dense layers of 400 units, each BatchNorm then ReLU, hidden layers without bias (the
BatchNorm shift stands in for it), a linear output with bias; discriminator 3 maxout layers of
200 units with 5 pieces and a linear output; every weight N(0, 0.02²), biases zero.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from lbt_lightning.networks.mlp import Activation, make_activation


def normal_init(module: nn.Module, std: float) -> None:
    """Weights N(0, std²) and zero biases (PacGAN: ``IsotropicGaussian(0.02)``, ``Constant(0)``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_widths(hidden: Sequence[int], init_std: float) -> None:
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {list(hidden)}")
    if not init_std > 0:
        raise ValueError(f"init_std must be > 0, got {init_std!r}")


class PacGANGenerator(nn.Module):
    """x = G(z), z ~ N(0, I): dense layers, each (BatchNorm →) activation, then a linear output.

    With ``batch_norm=True`` every sample depends on the other samples of its batch in training
    mode; the methods then draw each fake batch in its own generator call (see
    :attr:`~lbt_lightning.methods.base.GenerativeModule.batch_independent`), so each batch is
    normalised with its own statistics, as in a single GAN step.

    Arguments:
        z_dim: Noise dimension (PacGAN: 2).
        out_features: Data dimension.
        hidden: Hidden widths (PacGAN: 4 × 400).
        activation: Hidden non-linearity (PacGAN: ReLU).
        batch_norm: BatchNorm before every hidden activation (PacGAN: yes).
        init_std: Standard deviation of the initial weights (PacGAN: 0.02).

    Example:
        >>> import torch
        >>> g = PacGANGenerator()
        >>> g(torch.randn(8, g.z_dim)).shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        z_dim: int = 2,  # PacGAN config num_zdim
        out_features: int = 2,
        hidden: Sequence[int] = (400, 400, 400, 400),  # PacGAN config gen_hidden_size, 4 layers
        activation: Activation = "relu",  # PacGAN config gen_activation: Rectifier
        batch_norm: bool = True,  # PacGAN pacgan_task.py: BatchNormalization before each activation
        init_std: float = 0.02,  # PacGAN config weights_init_std
    ):
        super().__init__()
        if z_dim < 1 or out_features < 1:
            raise ValueError(f"z_dim and out_features must be >= 1, got {z_dim} and {out_features}")
        _check_widths(hidden, init_std)
        self.z_dim, self.out_shape = z_dim, (out_features,)
        layers: list[nn.Module] = []
        for a, b in zip([z_dim, *hidden[:-1]], hidden):
            layers.append(nn.Linear(a, b, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(make_activation(activation))
        layers.append(nn.Linear(hidden[-1], out_features))
        self.net = nn.Sequential(*layers)
        normal_init(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class Maxout(nn.Module):
    """``max`` over ``pieces`` affine maps: (B, in) → (B, out) (Goodfellow et al., arXiv:1302.4389)."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(-1, (self.out_features, self.pieces)).amax(-1)


class MaxoutDiscriminator(nn.Module):
    """Logit D(x) of 2-D points: maxout layers and a linear output (PacGAN's 2-D discriminator).

    Arguments:
        in_features: Data dimension.
        hidden: Maxout widths (PacGAN: 3 × 200).
        pieces: Affine pieces per maxout unit (PacGAN: 5).
        init_std: Standard deviation of the initial weights (PacGAN: 0.02).

    Example:
        >>> import torch
        >>> MaxoutDiscriminator()(torch.randn(8, 2)).shape
        torch.Size([8])
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (200, 200, 200),  # PacGAN config disc_hidden_size, 3 layers
        pieces: int = 5,  # PacGAN config disc_maxout_pieces
        init_std: float = 0.02,  # PacGAN config weights_init_std
    ):
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        _check_widths(hidden, init_std)
        if not isinstance(pieces, int) or pieces < 1:
            raise ValueError(f"pieces must be an integer >= 1, got {pieces!r}")
        self.in_shape = (in_features,)
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [Maxout(a, b, pieces) for a, b in zip(widths[:-1], widths[1:])]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        normal_init(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)
