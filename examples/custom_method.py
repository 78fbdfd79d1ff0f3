"""A custom method: LBT whose teaching loss only counts the real points the estimator fits worst."""

from torch import Tensor
from torch.func import functional_call

from lbt_lightning import objectives
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
        t = self.teacher
        unrolled = objectives.unroll(  # φ^K: K differentiable steps on fresh fake samples
            objectives.log_likelihood(self.estimator, lambda: self.fake(real.shape[0])),
            objectives.detached_params(self.estimator),
            t.state(),
            steps=t.unroll_steps,
            lr=t.unroll_lr,
            inner_optimizer=t.inner_optimizer,
            first_order=t.first_order,
        )
        log_p = functional_call(self.estimator, unrolled.params, (real,))  # (B,)
        hardest = log_p.topk(max(1, round(self.quantile * len(real))), largest=False).values
        return -hardest.mean()
