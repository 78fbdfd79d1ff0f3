"""A custom method: LBT whose teaching loss only counts the real points the estimator fits worst."""

from torch import Tensor

from lbt_lightning.methods import LBT


class HardExampleLBT(LBT):
    """LBT with ``-mean log p_{φ^K}(x)`` over the ``quantile`` fraction of the real batch with
    the lowest likelihood: the points in modes the generator (hence the estimator) misses."""

    def __init__(self, *args, quantile: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile = quantile

    def teaching_loss(self, real: Tensor) -> Tensor:
        # The same unroll of the estimator (eager or compiled), only another criterion.
        return super().teaching_loss(real, criterion=self.worst_fit)

    def worst_fit(self, log_p: Tensor) -> Tensor:
        """``-mean`` of the lowest ``quantile`` of ``log p_{φ^K}(real)``, shape (B,)."""
        hardest = log_p.topk(max(1, round(self.quantile * len(log_p))), largest=False).values
        return -hardest.mean()
