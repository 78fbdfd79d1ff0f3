"""Stacked MNIST modes (of 1000) and KL(p_gen ‖ uniform), the VEEGAN/PacGAN protocol (PAPER.md §5.2)."""

import math
import os

import torch
from torch import Tensor
from torchmetrics import Metric

from lbt_lightning.networks.classifier import DigitClassifier, load_classifier

NUM_MODES = 1000
PLACE = (1, 10, 100)  # mode id = c1 + 10·c2 + 100·c3, channel c holds digit c_{c+1}


class StackedMNISTModes(Metric):
    """Classify each channel of each sample, take the mode id ``c1 + 10·c2 + 100·c3``, count the
    modes hit at least once (no confidence threshold) and KL(p̂ ‖ Uniform(1000)) = Σ_k p̂_k log(1000·p̂_k)
    of the empirical mode histogram (empty modes contribute 0). An image with a NaN or inf pixel
    is not classified: it is counted in ``nonfinite`` and left out of the histogram. With no
    classified sample, ``kl`` is NaN.

    ``update`` takes images (B, 3, 28, 28) in [0, 1], which the classifier labels, or digit labels
    (B, 3) as integers. States are sum-reduced, so the metric is correct under DDP.

    Arguments:
        classifier: A :class:`DigitClassifier`, or the path of a checkpoint written by
            ``python -m lbt_lightning.programs.classifier``; None when only labels are passed to ``update``.
        batch_size: Images classified at once (bounds memory for 26,000 samples).

    References:
        Srivastava et al., "VEEGAN", arXiv:1705.07761; Lin et al., "PacGAN", arXiv:1712.04086.

    Example:
        >>> metric = StackedMNISTModes()
        >>> metric.update(torch.tensor([[1, 2, 3], [1, 2, 3]]))
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'modes': 1.0, 'kl': 6.908, 'nonfinite': 0.0}
    """

    full_state_update = False

    def __init__(self, classifier: DigitClassifier | str | os.PathLike | None = None, batch_size: int = 1000, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(classifier, (str, os.PathLike)):
            classifier = load_classifier(classifier)
        self.classifier = classifier.eval().requires_grad_(False) if classifier is not None else None
        self.batch_size = batch_size
        self.add_state("counts", torch.zeros(NUM_MODES, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nonfinite", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def digits(self, images: Tensor) -> Tensor:
        """Digit labels (B, 3) of images (B, 3, 28, 28), one channel at a time."""
        if self.classifier is None:
            raise ValueError("StackedMNISTModes needs a classifier (module or checkpoint path) to label images")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, 28, 28), got {tuple(images.shape)}")
        self.classifier.eval()  # BN running statistics and no dropout, whatever mode the caller set
        channels = images.float().flatten(0, 1).unsqueeze(1)  # (B·3, 1, 28, 28)
        labels = [self.classifier(chunk).argmax(1) for chunk in channels.split(3 * self.batch_size)]
        return torch.cat(labels).view(-1, 3)

    def update(self, samples: Tensor) -> None:
        if samples.is_floating_point():
            finite = torch.isfinite(samples.flatten(1)).all(dim=1)
            self.nonfinite += (~finite).sum()
            samples = samples[finite]
            if len(samples) == 0:
                return
            samples = self.digits(samples)
        elif samples.ndim != 2 or samples.shape[1] != 3 or samples.min() < 0 or samples.max() > 9:
            raise ValueError(f"digit labels must be integers in 0..9 of shape (B, 3), got {tuple(samples.shape)}")
        modes = (samples.long() * samples.new_tensor(PLACE, dtype=torch.long)).sum(1)
        self.counts += torch.bincount(modes, minlength=NUM_MODES)
        self.total += len(modes)

    def compute(self) -> dict[str, Tensor]:
        modes, nonfinite = (self.counts > 0).sum().float(), self.nonfinite.float()
        if self.total == 0:  # KL 0 would read as a perfect generator
            return {"modes": modes, "kl": torch.tensor(float("nan")), "nonfinite": nonfinite}
        p = self.counts.double() / self.total
        kl = torch.where(p > 0, p * (torch.log(p) + math.log(NUM_MODES)), torch.zeros_like(p)).sum()
        return {"modes": modes, "kl": kl.float(), "nonfinite": nonfinite}
