"""Mixed precision: the Trainer precisions the methods accept, and the float32 island of the unrolls.

Under ``trainer.precision: bf16-mixed`` Lightning runs every ``training_step`` inside
``torch.autocast`` (manual optimization included), so the generator's and discriminator's
forward passes run in bfloat16. The unrolls (LBT's estimator unroll and real update, the Unrolled
GAN's discriminator unroll) run inside :func:`full_precision` instead: their K chained optimizer
steps, second-order terms and Adam moments would lose the small per-step changes (lr 1e-4 against
bfloat16's 8-bit mantissa) that the teaching signal is made of.
"""

from contextlib import contextmanager

import torch

SUPPORTED_PRECISIONS = ("32-true", "64-true", "bf16-mixed")
_REFUSED = {
    "16-mixed": (
        "float16 autocast needs a GradScaler, whose loss-scaled gradients the non-finite guard and the "
        "gradient clip of these manually optimized methods would see before unscaling"
    ),
    "bf16-true": "the estimator's Adam state and the unrolls must stay in float32",
    "16-true": "the estimator's Adam state and the unrolls must stay in float32",
}


def check_precision(method: str, precision: str) -> None:
    """Refuse a Trainer precision that ``method`` cannot train with, before training.

    Arguments:
        method: The method's name, for the message (e.g. ``"LBTGAN"``).
        precision: ``trainer.precision`` as Lightning normalises it (``"32-true"``, ``"bf16-mixed"``...).

    Raises:
        ValueError: Naming the method, the precision, the reason and the supported ones.

    Example:
        >>> check_precision("GAN", "bf16-mixed")
        >>> check_precision("LBT", "16-mixed")
        Traceback (most recent call last):
        ...
        ValueError: LBT: trainer.precision='16-mixed' is not supported (float16 autocast ...
    """
    if precision in SUPPORTED_PRECISIONS:
        return
    reason = _REFUSED.get(precision, "untested with these methods")
    raise ValueError(
        f"{method}: trainer.precision={precision!r} is not supported ({reason}); "
        f"use one of {SUPPORTED_PRECISIONS} (bf16-mixed: bfloat16 autocast, the unrolls in float32)"
    )


@contextmanager
def full_precision(device: torch.device):
    """Autocast off on ``device``'s type: the computations inside run in their tensors' own dtype."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield
