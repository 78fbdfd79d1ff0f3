"""DCGAN-style generator and the small discriminator for Stacked MNIST (PAPER.md §3.2)."""

from typing import Literal

from torch import Tensor, nn

from lbt_lightning.networks.mlp import glorot_init

NORMS = ("none", "batch")


class SMNISTGenerator(nn.Module):
    """x = G(z): dense 1024 → BN → ReLU → dense 7·7·32 → BN → ReLU → deconv 5×5 s2 16 → BN → ReLU →
    deconv 5×5 s2 ``out_channels`` → sigmoid, giving images in [0, 1] of shape (3, 28, 28).

    BatchNorm always normalises with the batch statistics, in eval mode too, and keeps no running
    statistics (the authors' code calls it with ``training=True`` everywhere, PAPER.md §3.2).

    Arguments:
        z_dim: Noise dimension (paper: 256).
        hidden: Width of the first dense layer (1024).
        channels: Feature maps at 7×7 and at 14×14 (32, 16).
        out_channels: Image channels (3).

    Example:
        >>> import torch
        >>> g = SMNISTGenerator()
        >>> g(torch.randn(4, g.z_dim)).shape
        torch.Size([4, 3, 28, 28])
    """

    def __init__(
        self,
        z_dim: int = 256,  # PAPER.md §3.2
        hidden: int = 1024,  # PAPER.md §3.2
        channels: tuple[int, int] = (32, 16),  # PAPER.md §3.2: 7x7x32, then 16
        out_channels: int = 3,
    ):
        super().__init__()
        for name, value in (("z_dim", z_dim), ("hidden", hidden), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if len(channels) != 2 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be two integers >= 1, got {channels!r}")
        c7, c14 = channels
        self.z_dim = z_dim
        self.out_shape = (out_channels, 28, 28)

        def bn1d(n):
            return nn.BatchNorm1d(n, track_running_stats=False)

        self.dense = nn.Sequential(
            nn.Linear(z_dim, hidden, bias=False), bn1d(hidden), nn.ReLU(),
            nn.Linear(hidden, 7 * 7 * c7, bias=False), bn1d(7 * 7 * c7), nn.ReLU(),
        )  # fmt: skip
        # kernel 5, stride 2, padding 2, output_padding 1: TF's "same" deconvolution, 7 -> 14 -> 28.
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c7, c14, 5, 2, padding=2, output_padding=1, bias=False),
            nn.BatchNorm2d(c14, track_running_stats=False), nn.ReLU(),
            nn.ConvTranspose2d(c14, out_channels, 5, 2, padding=2, output_padding=1), nn.Sigmoid(),
        )  # fmt: skip
        self.c7 = c7
        glorot_init(self)

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(z).view(-1, self.c7, 7, 7)  # (B, 32, 7, 7)
        return self.deconv(h)  # (B, 3, 28, 28)


class SMNISTDiscriminator(nn.Module):
    """Logit D(x), shape (B,): conv 4×4 s2 16 → LReLU(0.2) → conv 4×4 s2 32 → [BN] → LReLU →
    dense 1024 → [BN] → LReLU → dense 1 (PAPER.md §3.2; ``feature_dim`` 16 scales the widths).

    Arguments:
        in_shape: Image shape (C, H, W) with H, W divisible by 4.
        feature_dim: Channels of the first conv (paper: 16; the second has twice as many).
        hidden: Width of the dense layer (1024).
        norm: ``"none"`` (the paper's default) or ``"batch"`` (its ``-d_bn`` flag).

    Example:
        >>> import torch
        >>> SMNISTDiscriminator()(torch.rand(4, 3, 28, 28)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int] = (3, 28, 28),
        feature_dim: int = 16,  # PAPER.md §3.2
        hidden: int = 1024,  # PAPER.md §3.2
        norm: Literal["none", "batch"] = "none",  # PAPER.md §3.2: BN only with -d_bn
    ):
        super().__init__()
        if len(in_shape) != 3 or in_shape[1] % 4 or in_shape[2] % 4:
            raise ValueError(f"in_shape must be (C, H, W) with H and W divisible by 4, got {tuple(in_shape)}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        for name, value in (("feature_dim", feature_dim), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.in_shape = tuple(in_shape)
        c, h, w = self.in_shape
        f = feature_dim
        batch = norm == "batch"
        self.net = nn.Sequential(
            nn.Conv2d(c, f, 4, 2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(f, 2 * f, 4, 2, padding=1, bias=False),
            nn.BatchNorm2d(2 * f) if batch else nn.Identity(), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * f * (h // 4) * (w // 4), hidden, bias=False),
            nn.BatchNorm1d(hidden) if batch else nn.Identity(), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )  # fmt: skip
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
