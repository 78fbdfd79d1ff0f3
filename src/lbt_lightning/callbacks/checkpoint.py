"""Checkpoints every N iterations (Lightning's ``every_n_train_steps`` counts optimizer steps)."""

from pytorch_lightning.callbacks import ModelCheckpoint


class IterationCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also saves at the end of every ``every_n_iterations``-th iteration.

    ``every_n_train_steps`` follows ``trainer.global_step``, which advances once per optimizer step
    (twice per GAN iteration); this counts the module's ``iteration`` instead. ``{iteration}`` can
    be used in ``filename``. Resume with ``fit --ckpt_path <dir>/last.ckpt``.

    Arguments:
        every_n_iterations: Save period in iterations, or None.
        **kwargs: Passed to ``ModelCheckpoint`` (``dirpath``, ``save_last``, ``filename``, ...).
    """

    def __init__(self, every_n_iterations: int | None = None, **kwargs):
        kwargs.setdefault("filename", "{iteration}")
        super().__init__(**kwargs)
        if every_n_iterations is not None and (not isinstance(every_n_iterations, int) or every_n_iterations < 1):
            raise ValueError(f"every_n_iterations must be an integer >= 1 or None, got {every_n_iterations!r}")
        self.every_n_iterations = every_n_iterations

    def _monitor_candidates(self, trainer):
        candidates = super()._monitor_candidates(trainer)
        module = trainer.lightning_module
        if hasattr(module, "iteration"):
            candidates["iteration"] = module.iteration.detach().clone()
        return candidates

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_iterations
        if n is None or int(pl_module.iteration) % n != 0 or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
