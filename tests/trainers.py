"""A quiet Trainer for tests: ``iterations`` iterations, no logger, bar or summary."""

import pytorch_lightning as pl


def quiet_trainer(iterations: int, **kwargs) -> pl.Trainer:
    """Trainer for ``iterations`` iterations; ``kwargs`` override (e.g. callbacks, checkpointing)."""
    settings = dict(
        max_epochs=1,
        limit_train_batches=iterations,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**settings, **kwargs})
