"""MLP generator and discriminator for the 2-D mixtures (PAPER.md §3.1)."""

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

Activation = Literal["tanh", "relu", "leaky_relu", "elu"]
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, ``tf.layers``' defaults as in the authors' code."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Dense layers with one activation between them and a linear output.

    Weights use Glorot-uniform and biases zero, as ``tf.layers.dense`` in the paper's code.

    Arguments:
        in_features: Input size.
        out_features: Output size.
        hidden: Widths of the hidden layers.
        activation: Non-linearity after every hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        activation: Activation = "tanh",
    ):
        widths = [in_features, *hidden]
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {list(hidden)}")
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)
        glorot_init(self)


class MLPGenerator(nn.Module):
    """x = G(z), z ~ N(0, I): the paper's toy generator (z in R^256, two 128-unit tanh layers).

    Arguments:
        z_dim: Noise dimension.
        out_features: Data dimension.
        hidden: Hidden widths.
        activation: Hidden non-linearity.

    Example:
        >>> import torch
        >>> g = MLPGenerator()
        >>> g(torch.randn(4, g.z_dim)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        z_dim: int = 256,  # PAPER.md §3.1: z_dims='256,32'
        out_features: int = 2,
        hidden: Sequence[int] = (128, 128),  # PAPER.md §3.1
        activation: Activation = "tanh",
    ):
        super().__init__()
        self.z_dim = z_dim
        self.out_shape = (out_features,)
        self.net = MLP(z_dim, out_features, hidden, activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Logit D(x) for 2-D points (PAPER.md §3.1: dense 128 tanh, dense 128 tanh, dense 1).

    Arguments:
        in_features: Data dimension.
        hidden: Hidden widths.
        activation: Hidden non-linearity.
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (128, 128),
        activation: Activation = "tanh",
    ):
        super().__init__()
        self.in_shape = (in_features,)
        self.net = MLP(in_features, 1, hidden, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)
