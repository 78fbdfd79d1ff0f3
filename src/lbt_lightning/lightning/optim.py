"""Optimizer construction with the paper's defaults and errors that name the argument."""

from collections.abc import Callable, Iterable

import torch

PAPER_BETAS = (0.5, 0.999)  # PAPER.md §2.2: every Adam in the paper's code uses β1 = 0.5


def build_optimizer(
    name: str,
    factory: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None,
    params: Iterable[torch.nn.Parameter],
    default_lr: float,
) -> torch.optim.Optimizer:
    """``factory(params)``, or Adam(lr=default_lr, betas=(0.5, 0.999)) when it is None.

    Raises:
        ValueError: naming ``name`` when the optimizer refuses its arguments (e.g. lr <= 0).
    """
    if factory is None:
        return torch.optim.Adam(params, lr=default_lr, betas=PAPER_BETAS)
    try:
        optimizer = factory(params)
    except ValueError as error:
        raise ValueError(f"{name}: {error} (fix {name}.init_args)") from error
    for group in optimizer.param_groups:
        if "lr" in group and not float(group["lr"]) > 0:
            raise ValueError(f"{name}: lr must be > 0, got {group['lr']} (fix {name}.init_args.lr)")
    return optimizer


def adversarial_optimizers(module) -> list[torch.optim.Optimizer]:
    """[generator, discriminator] optimizers of a module with ``generator_optimizer`` and
    ``discriminator_optimizer`` arguments; None gives the paper's Adam (PAPER.md §2.2: G 1e-3 (toy),
    D 1e-4, both β1 0.5)."""
    return [
        build_optimizer("generator_optimizer", module.generator_optimizer, module.generator.parameters(), 1e-3),
        build_optimizer(
            "discriminator_optimizer", module.discriminator_optimizer, module.discriminator.parameters(), 1e-4
        ),
    ]
