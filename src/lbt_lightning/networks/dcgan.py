"""DCGAN generator and discriminator for 32x32 (CIFAR-10) and 64x64 (CelebA) images (PAPER.md §3.3, §3.4)."""

import math

from torch import Tensor, nn

from lbt_lightning.networks.mlp import glorot_init


def _check_image_size(image_size: int) -> int:
    """Number of stride-2 layers between 4x4 and ``image_size`` (3 for 32, 4 for 64)."""
    if not isinstance(image_size, int) or image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 8 (paper: 32 or 64), got {image_size!r}")
    return int(math.log2(image_size)) - 2


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # The authors' code calls BN with training=True everywhere: batch statistics, in eval too.
    return nn.BatchNorm2d(channels, track_running_stats=False)


class DCGANGenerator(nn.Module):
    """x = G(z) in [-1, 1]: dense 4·4·``width`` → BN → ReLU, then 5x5 stride-2 deconvolutions that
    halve the channels (BN, ReLU) up to ``image_size / 2``, and a last 5x5 stride-2 deconvolution
    to ``channels`` → tanh.

    image_size 32 (CIFAR-10, PAPER.md §3.3): 512 → 256 → 128 → 3; image_size 64 (CelebA, §3.4)
    adds one 64-channel deconvolution: 512 → 256 → 128 → 64 → 3. BatchNorm always uses the batch
    statistics and keeps no running statistics.

    Arguments:
        z_dim: Noise dimension (paper: 256).
        image_size: Output side, a power of two >= 8 (paper: 32 or 64).
        channels: Image channels.
        width: Channels at 4x4 (paper: 512).

    References:
        Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs", arXiv:1511.06434.

    Example:
        >>> import torch
        >>> g = DCGANGenerator(image_size=32)
        >>> g(torch.randn(4, g.z_dim)).shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(
        self,
        z_dim: int = 256,  # PAPER.md §3.3
        image_size: int = 32,
        channels: int = 3,
        width: int = 512,  # PAPER.md §3.3: dense(4*4*512)
    ):
        super().__init__()
        for name, value in (("z_dim", z_dim), ("channels", channels), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        n_up = _check_image_size(image_size)
        if width >> (n_up - 1) < 1:
            raise ValueError(f"width={width} is too small to halve {n_up - 1} times")
        self.z_dim, self.width = z_dim, width
        self.out_shape = (channels, image_size, image_size)
        self.dense = nn.Linear(z_dim, 4 * 4 * width, bias=False)  # bias: BN follows
        self.bn = nn.Sequential(_batch_norm(width), nn.ReLU())
        layers: list[nn.Module] = []
        c = width
        for _ in range(n_up - 1):
            # kernel 5, stride 2, padding 2, output_padding 1: TF's "same" deconvolution doubles the side.
            layers += [nn.ConvTranspose2d(c, c // 2, 5, 2, padding=2, output_padding=1, bias=False)]
            layers += [_batch_norm(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 5, 2, padding=2, output_padding=1), nn.Tanh()]
        self.deconv = nn.Sequential(*layers)
        glorot_init(self)

    def forward(self, z: Tensor) -> Tensor:
        h = self.bn(self.dense(z).view(-1, self.width, 4, 4))  # (B, 512, 4, 4)
        return self.deconv(h)  # (B, 3, image_size, image_size)


class DCGANDiscriminator(nn.Module):
    """Logit D(x), shape (B,): dropout(0.2) on the input, 5x5 stride-2 convolutions from 64 channels
    doubling down to 4x4 (LReLU(0.2); BN on all but the first), then dense 1.

    image_size 32 (PAPER.md §3.3): 64 → 128 → 256; image_size 64 (§3.4) adds a 512-channel
    convolution. BatchNorm always uses the batch statistics and keeps no running statistics.

    Arguments:
        image_size: Input side, a power of two >= 8 (paper: 32 or 64).
        channels: Image channels.
        width: Channels of the first convolution (paper: 64).
        dropout: Input dropout rate (paper: 0.2).

    Example:
        >>> import torch
        >>> d = DCGANDiscriminator(image_size=32)
        >>> d(torch.randn(4, *d.in_shape)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,  # PAPER.md §3.3
        dropout: float = 0.2,  # PAPER.md §3.3
    ):
        super().__init__()
        for name, value in (("channels", channels), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        n_down = _check_image_size(image_size)
        self.in_shape = (channels, image_size, image_size)
        # kernel 5, stride 2, padding 2: TF's "same" convolution halves the side.
        layers: list[nn.Module] = [nn.Dropout(dropout), nn.Conv2d(channels, width, 5, 2, padding=2), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(c, 2 * c, 5, 2, padding=2, bias=False), _batch_norm(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Flatten(), nn.Linear(4 * 4 * c, 1)]
        self.net = nn.Sequential(*layers)
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
