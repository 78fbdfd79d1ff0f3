"""W&B offline: a short CLI fit leaves the config, the metrics and the plots in the run folder."""

import json
import struct
from pathlib import Path

import pytest
import yaml
from paths import EXPERIMENTS

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

from lbt_lightning.callbacks.save_config import WANDB_CONFIG_FILE  # noqa: E402
from lbt_lightning.lightning.cli import main  # noqa: E402

BLOCK, HEADER = 32768, 7  # LevelDB log format: 32 KiB blocks of chunks with a 7-byte header
FULL, LAST = 1, 4  # chunk types; FIRST (2) and MIDDLE (3) continue a record


def read_records(path: Path) -> list:
    """The protobuf records of a ``run-<id>.wandb`` file (after its 7-byte ``:W&B`` header)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a .wandb file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture
def offline(tmp_cwd, monkeypatch):
    """W&B in offline mode with every folder it touches inside the test's directory."""
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_DIR": str(tmp_cwd),
        "WANDB_CACHE_DIR": str(tmp_cwd / "cache"),
        "WANDB_CONFIG_DIR": str(tmp_cwd / "config"),
        "WANDB_DATA_DIR": str(tmp_cwd / "data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield tmp_cwd
    wandb.finish()  # flushes the run's records; also closes it if the test failed


def test_offline_run_holds_config_metrics_and_plots(offline):
    main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "trainer.yaml"),
            "--config",
            str(EXPERIMENTS / "ring/lbt_mixture.yaml"),
            "--config",
            str(EXPERIMENTS / "wandb.yaml"),
            "--trainer.max_steps=3",
            "--trainer.log_every_n_steps=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    wandb.finish()
    (run_dir,) = (offline / "runs/wandb").glob("offline-run-*")

    config = yaml.safe_load((run_dir / "files" / WANDB_CONFIG_FILE).read_text())
    assert config["model"]["class_path"] == "lbt_lightning.methods.LBT"
    assert config["model"]["init_args"]["estimator"]["class_path"] == "lbt_lightning.estimators.GaussianMixture"

    (log,) = run_dir.glob("run-*.wandb")
    records = read_records(log)
    run_config = {
        item.key: json.loads(item.value_json)
        for record in records
        for item in (record.run.config.update if record.HasField("run") else record.config.update)
    }
    assert run_config["model"]["init_args"]["unroll_steps"] == 5
    assert run_config["data"]["class_path"] == "lbt_lightning.data.RingDataModule"
    history = {
        tuple(item.nested_key) or (item.key,): json.loads(item.value_json)
        for record in records
        if record.HasField("history")
        for item in record.history.item
    }
    for key in ("train/teach_loss", "train/e_loss", "val/modes", "val/hq", "val/kl"):
        assert isinstance(history[(key,)], (int, float)), key
    assert history[("val/samples", "_type")] == "images/separated"  # the scatter plot, via log_image
    saved = {f.path for r in records if r.HasField("files") for f in r.files.files}
    assert WANDB_CONFIG_FILE in saved

    images = sorted((run_dir / "files/media/images").rglob("*.png"))
    assert images, "no plot reached the W&B run"
    assert any(path.startswith("media/images/val/samples") for path in saved)


def test_image_grid_figure_reaches_wandb_through_log_image(offline):
    """What image callbacks send: a torchvision grid as a figure, through periodic.log_figure."""
    import matplotlib.pyplot as plt
    import torch
    from pytorch_lightning.loggers import WandbLogger
    from torchvision.utils import make_grid

    from lbt_lightning.callbacks.periodic import log_figure

    logger = WandbLogger(project="test", save_dir=str(offline))
    trainer = type("TrainerStub", (), {"loggers": [logger]})()
    fig, ax = plt.subplots()
    ax.imshow(make_grid(torch.rand(16, 3, 8, 8), nrow=4).permute(1, 2, 0).numpy())
    log_figure(trainer, "val/images", fig, offline / "grid.png", step=7)
    plt.close(fig)
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    assert sorted((run_dir / "files/media/images/val").glob("images_*.png"))
