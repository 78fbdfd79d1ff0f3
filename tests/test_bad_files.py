"""Bad files: checkpoints that cannot be resumed from, a full disk during a checkpoint write, unreadable images."""

import argparse
import errno
import os
import random
import shutil
from pathlib import Path

import fault_run
import pytest
import torch
from PIL import Image
from trainers import quiet_trainer

from lbt_lightning.callbacks import IterationCheckpoint
from lbt_lightning.data import RingDataModule
from lbt_lightning.data.images import ImageFolderDataModule
from lbt_lightning.lightning.checkpoint_io import AtomicCheckpointIO, CheckpointError, check_fits, load_checkpoint_file

# ---- bad checkpoints ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A good LBT-GAN checkpoint and one file per fault, each with what its error must say."""
    root = tmp_path_factory.mktemp("checkpoints")
    fault_run.cli("lbt_gan", root / "lbt_gan")
    good = next((root / "lbt_gan").rglob("last.ckpt"))
    fault_run.cli("gan", root / "gan")
    data = good.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (root / "random.ckpt").write_bytes(random.Random(0).randbytes(4096))
    # What a 3-D run's checkpoint holds: the same method and networks, 3 outputs/inputs.
    three_d = [
        "--model.init_args.generator.init_args.out_features=3",
        "--model.init_args.estimator.init_args.data_shape=[3]",
        "--model.init_args.discriminator.init_args.in_features=3",
    ]
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["state_dict"] = fault_run.cli("lbt_gan", root / "unused", *three_d, run=False).model.state_dict()
    hparams = checkpoint["hyper_parameters"]
    hparams["generator"]["init_args"]["out_features"] = 3
    hparams["estimator"]["init_args"]["data_shape"] = [3]
    hparams["discriminator"]["init_args"]["in_features"] = 3
    torch.save(checkpoint, root / "shape3.ckpt")
    torch.save({**checkpoint, "extra": argparse.Namespace(x=1)}, root / "pickled.ckpt")
    return {
        "truncated": (root / "truncated.ckpt", "is truncated"),
        "random_bytes": (root / "random.ckpt", "is not a PyTorch checkpoint"),
        "other_method": (next((root / "gan").rglob("last.ckpt")), "is a lbt_lightning.methods.GAN checkpoint"),
        # the 2-D config names the shapes, which differ from the checkpoint's: refused at the argument
        "other_data_shape": (root / "shape3.ckpt", "data_shape: [2] given, but checkpoint"),
        "missing": (root / "missing.ckpt", "does not exist"),
        "pickled_objects": (root / "pickled.ckpt", "weights_only=True refuses"),
    }


@pytest.mark.parametrize(
    "fault", ["truncated", "random_bytes", "other_method", "other_data_shape", "missing", "pickled_objects"]
)
def test_bad_ckpt_path_stops_with_one_line(fault, bad_checkpoints, tmp_path):
    path, expected = bad_checkpoints[fault]
    with pytest.raises(SystemExit) as stop:
        fault_run.cli("lbt_gan", tmp_path, f"--ckpt_path={path}", "--trainer.callbacks+=fault_run.FailOnTrainStart")
    message = str(stop.value.code)
    assert "\n" not in message and repr(str(path)) in message and expected in message, message


def test_state_dict_of_another_shape_is_named(tmp_path):
    """A Python-built model (no saved config) and a checkpoint whose tensors have other shapes."""
    two, three = fault_run.tiny_lbt_gan(2), fault_run.tiny_lbt_gan(3)
    with pytest.raises(CheckpointError, match=r"'x.ckpt' does not fit this LBTGAN: generator\.\S+ has shape \(3, 8\)"):
        check_fits(two, {"state_dict": three.state_dict()}, "x.ckpt")


# ---- a full disk ------------------------------------------------------------------------------


class FullDisk(AtomicCheckpointIO):
    """Disk space for ``room`` checkpoint writes; the next one fails half-way with ENOSPC."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room

    def _write(self, f, data):
        if self.room == 0:
            f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        super()._write(f, data)


def test_full_disk_keeps_last_checkpoint_and_names_the_folder(tmp_path):
    folder = tmp_path / "ckpt"
    checkpoint = IterationCheckpoint(dirpath=folder, every_n_train_steps=1, save_last=True)
    # room for iteration 1 (step=1.ckpt, last.ckpt); iteration 2's first write fails
    trainer = quiet_trainer(4, enable_checkpointing=True, callbacks=[checkpoint], plugins=[FullDisk(room=2)])
    with pytest.raises(CheckpointError, match=f"in '{folder}' \\(No space left on device\\)"):
        trainer.fit(fault_run.tiny_lbt_gan(2), RingDataModule(batch_size=8))
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=1.ckpt"]  # no partial file
    assert int(load_checkpoint_file(folder / "last.ckpt")["global_step"]) == 1


def test_partial_file_is_renamed_within_the_folder(tmp_path, monkeypatch):
    """The rename that publishes a checkpoint stays in one folder (one file system: atomic)."""
    renames = []
    monkeypatch.setattr(os, "replace", lambda src, dst: renames.append((Path(src), Path(dst))) or shutil.move(src, dst))
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "a" / "last.ckpt")
    assert renames == [(tmp_path / "a" / ".last.ckpt.partial", tmp_path / "a" / "last.ckpt")]
    assert load_checkpoint_file(tmp_path / "a" / "last.ckpt") == {"state_dict": {}}


# ---- bad image files --------------------------------------------------------------------------


def image_folder(root: Path, n: int = 6) -> Path:
    for i in range(n):
        Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(root / f"{i}.png")
    return root


def test_corrupt_image_is_named_at_setup(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "2.png").write_bytes((tmp_path / "2.png").read_bytes()[:40])  # cut short
    (tmp_path / "notes.jpg").write_text("not an image")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"'.*2\.png' is not a readable image .*2 such files"):
        dm.setup("fit")


def test_corrupt_images_skipped_and_counted_when_asked(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "notes.jpg").write_text("not an image")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=2, num_workers=0, bad_files="skip")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image files"):
        dm.setup("fit")
    assert len(dm.dataset) == 6 and dm.skipped_files == [str(tmp_path / "notes.jpg")]


def test_empty_image_folder_names_the_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"root='{tmp_path}' holds no image files"):
        ImageFolderDataModule(str(tmp_path)).setup("fit")
