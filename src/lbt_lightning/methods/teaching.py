"""What LBT and LBT-GAN share: the generator teaches a :class:`~lbt_lightning.unroll.inner.Student`."""

from torch import Tensor

from lbt_lightning.estimators.base import DensityEstimator
from lbt_lightning.lightning.precision import full_precision
from lbt_lightning.unroll.inner import Criterion, Student, negative_mean


class Teaching:
    """Mixin of the methods that teach the estimator held in ``self.student``: its real update
    and the ``teaching_loss`` hook that their ``training_step`` calls."""

    student: Student

    @property
    def estimator(self) -> DensityEstimator:
        return self.student.estimator

    def update_student(self, n: int) -> Tensor:
        """The estimator's real update (PAPER.md §2.1 point 1) on ``estimator_steps × K`` fresh
        batches of n generated samples; a skipped (non-finite) update is counted. Returns e_loss."""
        steps = self.student.estimator_steps * self.student.unroll_steps
        with full_precision(self.device):  # float32 under bf16-mixed (lbt_lightning.lightning.precision)
            fakes = self.sample_batches(n, steps)
            e_loss, applied = self.student.update(fakes, self.reduce_estimator_grad, self.all_finite)
        if not applied:
            self.record_skip()
        return e_loss

    def teaching_loss(self, real: Tensor, criterion: Criterion = negative_mean) -> Tensor:
        """The generator's teaching loss: ``criterion(log p_{φ^K}(real))`` through a fresh K-step
        unroll on new generated batches, by default ``-mean log p_{φ^K}(real)``. Override it, or
        call it with another ``criterion``, for another teaching loss (docs/extending.md).

        Arguments:
            real: The real batch.
            criterion: Maps ``log p_{φ^K}(real)``, shape (B,), to the loss; it runs inside the
                compiled graph with ``unroll_backend="compiled"``.
        """
        with full_precision(self.device):  # the generator's samples too: the unroll differentiates them
            fakes = self.sample_batches(real.shape[0], self.student.unroll_steps, grad=True)
            return self.student.teaching_loss(fakes, real, criterion)
