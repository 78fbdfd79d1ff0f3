"""The progress bar shows the iteration; fit ends with a table of the final metrics."""

import pytorch_lightning as pl
from paths import EXPERIMENTS
from pytorch_lightning.callbacks import ProgressBar

from lbt_lightning.callbacks import IterationProgressBar, MetricsTable, ModeCoverageCallback
from lbt_lightning.callbacks.progress import without_progress_bars
from lbt_lightning.data import RingDataModule
from lbt_lightning.estimators import GaussianMixture
from lbt_lightning.lightning.cli import main
from lbt_lightning.methods import LBT
from lbt_lightning.networks import MLPGenerator


def test_bar_shows_iteration_losses_and_modes_and_fit_ends_with_a_table(tmp_cwd, capsys):
    model = LBT(MLPGenerator(z_dim=8, hidden=[16]), GaussianMixture(components=4), unroll_steps=2, estimator_steps=1)
    bar, table = IterationProgressBar(), MetricsTable()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar, table, ModeCoverageCallback(every_n_iterations=2, num_samples=200)],
    )
    trainer.fit(model, RingDataModule(batch_size=32))
    shown = bar.get_metrics(trainer, model)
    assert shown["iteration"] == "3"
    assert {"train/e_loss", "train/teach_loss", "val/modes", "val/hq"} <= set(shown)
    assert table.rows["iteration"] == "3" and float(table.rows["s/iteration"]) > 0
    assert {"train/teach_loss", "val/modes", "val/hq", "val/kl"} <= set(table.rows)
    out = capsys.readouterr().out
    assert "LBT: final metrics" in out and "val/modes" in out


def test_disabling_the_bar_drops_the_listed_one(tmp_cwd):
    args = ["--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / "ring/gan.yaml")]
    listed = main(args, run=False).trainer.callbacks
    assert any(isinstance(cb, IterationProgressBar) for cb in listed)
    cli = main([*args, "--trainer.enable_progress_bar=false"], run=False)
    assert not any(isinstance(cb, ProgressBar) for cb in cli.trainer.callbacks)
    assert any(isinstance(cb, MetricsTable) for cb in cli.trainer.callbacks)
    assert without_progress_bars(None) is None
