"""The CLI's config callback, which also uploads the resolved config to Weights & Biases runs."""

from pathlib import Path

import pytorch_lightning as pl
import yaml
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

WANDB_CONFIG_FILE = "lightning_config.yaml"  # W&B keeps its own config.yaml in the same folder


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Lightning's :class:`~pytorch_lightning.cli.SaveConfigCallback` (``config.yaml`` in the log
    dir), and for every :class:`~pytorch_lightning.loggers.WandbLogger` the same resolved config
    as the run's config (searchable in the W&B UI) and as the file ``lightning_config.yaml``
    among the run's files, so ``lightning fit --config`` can rerun it as is.

    The CLI wires it in (``save_config_callback=``); it runs on rank 0 only.
    """

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        text = self.parser.dump(self.config, skip_none=False)  # the parser's own serialisation
        for logger in loggers:
            logger.log_hyperparams(yaml.safe_load(text))
            run = logger.experiment
            path = Path(run.dir) / WANDB_CONFIG_FILE
            path.write_text(text)
            run.save(str(path), base_path=run.dir, policy="now")
