"""MNIST digit classifier that counts Stacked MNIST modes, and its checkpoint format (PAPER.md §5.2)."""

import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

ARCHS = ("small", "paper")


def _block(c_in: int, c_out: int, act: Callable[[], nn.Module]) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act()]


class DigitClassifier(nn.Sequential):
    """Logits (B, 10) for MNIST digits (B, 1, 28, 28) in [0, 1].

    ``"small"``: conv 3×3 16 → BN → ReLU → max-pool → conv 3×3 32 → BN → ReLU → max-pool → dense 128 →
    dropout 0.5 → dense 10. It is not the paper's network: it trains to > 98% in well under a minute on
    two CPU cores, which the tests need, and mode counting needs only an accurate digit label.

    ``"paper"``: the authors' 10-conv CNN (``Classifier_smnist.py``, PAPER.md §5.2): 3×3 convs with 32,
    64, 64, 64, 128, 128, 128, 256, 256, 256 filters, BN and LeakyReLU(0.1), max-pool + dropout 0.5
    after the 4th and the 7th conv (placement reconstructed), global average pool, dense 10.

    Arguments:
        arch: ``"small"`` or ``"paper"``.

    Example:
        >>> DigitClassifier()(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, arch: Literal["small", "paper"] = "small"):
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if arch == "small":
            layers = [
                *_block(1, 16, nn.ReLU), nn.MaxPool2d(2),  # (B, 16, 14, 14)
                *_block(16, 32, nn.ReLU), nn.MaxPool2d(2),  # (B, 32, 7, 7)
                nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
            ]  # fmt: skip
        else:
            widths = [1, 32, 64, 64, 64, 128, 128, 128, 256, 256, 256]
            layers = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers += _block(a, b, lambda: nn.LeakyReLU(0.1))
                if i in (3, 6):
                    layers += [nn.MaxPool2d(2), nn.Dropout(0.5)]
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10)]
        super().__init__(*layers)
        self.arch = arch

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Digit classes (B,) of images (B, 1, 28, 28)."""
        return self(x).argmax(dim=1)


def save_classifier(classifier: DigitClassifier, path: str | os.PathLike, **info) -> None:
    """Write ``{"arch", "state_dict", **info}`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp"
    torch.save({"arch": classifier.arch, "state_dict": classifier.state_dict(), **info}, tmp)
    os.replace(tmp, path)


def load_classifier(path: str | os.PathLike) -> DigitClassifier:
    """The classifier saved at ``path`` by ``python -m lbt_lightning.programs.classifier``, in eval mode, frozen.

    Raises:
        FileNotFoundError: naming ``path`` and the command that creates it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"digit classifier checkpoint {path} not found; train one with "
            f"`python -m lbt_lightning.programs.classifier --root <mnist folder> --out {path}`"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    classifier = DigitClassifier(checkpoint["arch"])
    classifier.load_state_dict(checkpoint["state_dict"])
    return classifier.eval().requires_grad_(False)
