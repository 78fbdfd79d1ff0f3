"""Stacked MNIST mode count and KL of generator samples, logged as val/modes and val/kl (test/* in test)."""

import pytorch_lightning as pl
from torch import Tensor

from lbt_lightning.callbacks.evaluation import SampleEvaluator
from lbt_lightning.data.value_range import check_within
from lbt_lightning.metrics.stacked_mnist import StackedMNISTModes


class StackedMNISTModesCallback(SampleEvaluator):
    """:class:`StackedMNISTModes` of ``num_samples`` generator samples (split across DDP ranks, drawn
    in chunks of 100, classified in chunks of ``batch_size``) every N iterations and at the end of fit, and in
    ``lightning validate``/``test`` (see :class:`~lbt_lightning.callbacks.evaluation.SampleEvaluator`);
    logged as ``val/modes`` and ``val/kl`` (``test/*`` in test).

    The classifier checkpoint is read in ``setup``, not at construction, so configs instantiate
    without it; make it with ``python -m lbt_lightning.programs.classifier`` (see its docstring).

    Arguments:
        classifier_path: Checkpoint written by ``python -m lbt_lightning.programs.classifier``.
        every_n_iterations: Evaluation period.
        num_samples: Samples per evaluation over all ranks (PAPER.md §5.2: 26,000).
        batch_size: Samples classified at once.
        test_num_samples: Samples scored by ``lightning test``; None: as ``num_samples``.
    """

    def __init__(
        self,
        classifier_path: str = "checkpoints/smnist_classifier.pt",
        every_n_iterations: int = 5000,
        num_samples: int = 26_000,  # PAPER.md §5.2: 260 x 100
        batch_size: int = 1000,
        test_num_samples: int | None = None,
    ):
        super().__init__(every_n_iterations)
        for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if test_num_samples is not None and (not isinstance(test_num_samples, int) or test_num_samples < 1):
            raise ValueError(f"test_num_samples must be an integer >= 1 or None, got {test_num_samples!r}")
        self.classifier_path = classifier_path
        self.num_samples, self.batch_size, self.test_num_samples = num_samples, batch_size, test_num_samples
        self.metric: StackedMNISTModes | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "predict":  # predict only writes samples: no weights or classifier needed
            return
        check_within("StackedMNISTModesCallback (its digit classifier)", (0.0, 1.0), trainer.datamodule)
        if self.metric is None:
            self.metric = StackedMNISTModes(self.classifier_path, batch_size=self.batch_size)

    def num_samples_for(self, stage: str) -> int | None:
        if stage == "test":
            return self.test_num_samples or self.num_samples
        return self.num_samples if stage == "validate" else None

    def begin(self, trainer: pl.Trainer, pl_module: pl.LightningModule, num_samples: int) -> None:
        self.metric.to(pl_module.device).reset()

    def consume(self, samples: Tensor) -> None:
        self.metric.update(samples)

    def results(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metric.compute().items()}
