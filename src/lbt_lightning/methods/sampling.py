"""How every method draws from its generator: for training (``sample``, ``sample_batches``) and
for evaluation (``sample_indexed``, the one sampling path of every metric, plot and file)."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lbt_lightning.data.evaluation import SAMPLE_CHUNK, chunk_noise, rank_chunks
from lbt_lightning.lightning.precision import full_precision


@contextmanager
def _evaluation_forward(module: nn.Module):
    """``module`` in training mode (BatchNorm with batch statistics) for the block, then its
    modes and buffers (running statistics, ``num_batches_tracked``) exactly as before."""
    modes = {m: m.training for m in module.modules()}
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    module.train()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.train(training)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])


def _uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or not module.track_running_stats)


class Sampling:
    """The sampling half of :class:`~lbt_lightning.methods.base.GenerativeModule` (a mixin: it
    needs ``self.generator`` with ``z_dim`` and ``self.device``)."""

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.generator.z_dim, device=self.device)

    @property
    def batch_independent(self) -> bool:
        """Whether a sample of the generator depends only on its own z, so that one call can draw
        several batches (:meth:`sample_batches`): False when the generator has a BatchNorm layer that
        normalises with batch statistics (in training mode, or without running statistics), or
        when it sets ``batch_independent = False`` itself (e.g. for a minibatch-statistics layer)."""
        flag = getattr(self.generator, "batch_independent", None)
        if flag is not None:
            return bool(flag)
        return not any(_uses_batch_statistics(m) for m in self.generator.modules())

    def sample(self, n: int, *, grad: bool = False) -> Tensor:
        """n generated samples from fresh noise, as training draws them: in the generator's
        current mode, BatchNorm statistics updated as in any training forward. With ``grad``
        differentiable with respect to the generator (the generator's losses), else without a
        graph (the discriminator's and the estimator's batches). Evaluations use
        :meth:`sample_indexed` instead."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.generator(self.noise(n))

    def sample_batches(self, n: int, k: int, *, grad: bool = False) -> list[Tensor]:
        """k batches of n samples of :meth:`sample`. With ``grad`` (the teaching loss) they come
        from one generator call on k·n noise vectors where :attr:`batch_independent` (one
        backward through the generator instead of k); without (the estimator's update) from k
        calls, which measured 3 ms faster per ring iteration on a CPU than one call on n_est·K·n
        samples, whose activations outgrow the cache."""
        if grad and self.batch_independent:
            return list(self.sample(k * n, grad=True).split(n))
        return [self.sample(n, grad=grad) for _ in range(k)]

    @torch.no_grad()
    def sample_indexed(self, indices: Tensor) -> Tensor:
        """Sample i for each index i: the one sampling path of every evaluation (fit-time
        callbacks, ``validate``, ``test``, ``predict``, the demo and the benchmarks).

        Sample i is G(z_i), z_i drawn by a generator seeded with i, computed within its *chunk*,
        the ``SAMPLE_CHUNK`` indices ``[c·C, (c+1)·C)`` with c = i // C, in training mode: a
        BatchNorm layer normalises with that chunk's statistics, the mode the generator trains
        in (docs/evaluation.md has the measurement that chose it). No parameter or buffer
        changes (running statistics are restored), and sample i depends on nothing but the
        model and i: not on how many samples are drawn, the batch size, the number of devices
        or the Trainer's mode. Runs in full precision also under ``bf16-mixed``.
        """
        indices = indices.detach().cpu().long()
        if len(indices) == 0:
            return self.generator(torch.zeros(0, self.generator.z_dim, device=self.device))
        size = SAMPLE_CHUNK
        chunks = torch.unique(indices // size)  # sorted
        with full_precision(self.device), _evaluation_forward(self.generator):
            outputs = [self.generator(chunk_noise(int(c), size, self.generator.z_dim).to(self.device)) for c in chunks]
        position = torch.searchsorted(chunks, indices // size) * size + indices % size
        return torch.cat(outputs)[position.to(self.device)]

    def sample_chunks(self, n: int, rank: int = 0, world_size: int = 1) -> Iterator[Tensor]:
        """Samples ``0..n-1`` of :meth:`sample_indexed` that rank ``rank`` of ``world_size``
        scores, one chunk at a time: chunks ``rank, rank + W, ...``, as Lightning's validate,
        test and predict loops serve them (:class:`~lbt_lightning.data.evaluation.RankShard`)."""
        for indices in rank_chunks(n, rank, world_size):
            yield self.sample_indexed(indices)

    def validation_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        """Generated samples for the evaluation callbacks (``on_validation_batch_end``)."""
        return self.sample_indexed(indices)

    def test_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        return self.sample_indexed(indices)

    def predict_step(self, indices: Tensor, batch_idx: int) -> Tensor:
        return self.sample_indexed(indices)
