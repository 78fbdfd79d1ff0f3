"""Checkpoint files that are either complete or absent, and load errors that name the file."""

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, does not fit the model, or could not be written."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with writes that a kill or a full disk cannot leave half done,
    and loads that say which file is wrong and how.

    Save: the checkpoint goes to ``.<name>.partial`` in the target's folder, is flushed and
    fsynced, then renamed over the target with ``os.replace`` (atomic within one file system), so
    ``last.ckpt`` is always the previous complete checkpoint or the new one. Lightning's own save
    writes the temporary file to the system temp folder and *moves* it: a copy into the target,
    not a rename, whenever that folder is another file system (tmpfs ``/tmp``), and a killed
    write leaves its temporary file behind there. A failed write removes the partial file.

    Load: ``weights_only=True`` unless the caller says otherwise (tensors and plain containers
    only; nothing in the file runs), and a missing, truncated or foreign file raises
    :class:`CheckpointError` with one line naming it.

    :class:`~lbt_lightning.callbacks.IterationCheckpoint` installs it in place of Lightning's
    default; pass it as ``Trainer(plugins=[AtomicCheckpointIO()])`` otherwise.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The suffix keeps the partial file out of Lightning's ckpt_path="last" search (*.ckpt only).
        partial = path.with_name(f".{path.name}.partial")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised in memory first: a write error is then an OSError
        try:
            with open(partial, "wb") as f:
                self._write(f, buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)  # makes the rename itself durable

    def _write(self, f, data: memoryview) -> None:
        f.write(data)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only: bool | None = None):
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return load_checkpoint_file(path, map_location, True if weights_only is None else weights_only)


def load_checkpoint_file(path, map_location=None, weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` of a local Lightning checkpoint; :class:`CheckpointError` naming ``path`` and
    the fault when it is missing, truncated, not a PyTorch file or not a Lightning checkpoint."""
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} does not exist" + (" (a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):  # a zip archive cut short: the central directory is at the end
            raise CheckpointError(f"checkpoint {name} is truncated ({size} bytes, the zip archive is incomplete)")
        raise CheckpointError(f"checkpoint {name} is not a PyTorch checkpoint ({size} bytes, not a zip archive)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if weights_only and "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"checkpoint {name} holds Python objects that weights_only=True refuses to unpickle "
                "(unpickling them could run code); load it with weights_only=False only if you trust its source"
            ) from error
        raise CheckpointError(f"checkpoint {name} is corrupt ({type(error).__name__}: {first})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {name} is not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_method(checkpoint: dict[str, Any], class_path: str, path) -> None:
    """:class:`CheckpointError` when a CLI-made checkpoint (``_class_path`` in its hyper-parameters)
    holds another method than ``class_path`` (full or bare class name)."""
    saved, method = checkpoint.get("hyper_parameters", {}).get("_class_path"), class_path.rpartition(".")[2]
    if isinstance(saved, str) and saved.rpartition(".")[2] != method:
        raise CheckpointError(f"checkpoint {str(path)!r} is a {saved} checkpoint, not a {method} one")


def check_fits(module: torch.nn.Module, checkpoint: dict[str, Any], path) -> None:
    """:class:`CheckpointError` naming ``path`` when ``checkpoint`` holds another method or tensors
    of other names or shapes than ``module`` (e.g. a model for another data shape): one line,
    where ``load_state_dict`` would list every tensor."""
    method, name = type(module).__name__, repr(str(path))
    check_method(checkpoint, method, path)
    saved, own = checkpoint.get("state_dict", {}), module.state_dict()
    missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
    if missing or unexpected:
        example = f"e.g. {missing[0]!r} missing" if missing else f"e.g. {unexpected[0]!r} unexpected"
        raise CheckpointError(
            f"checkpoint {name} does not fit this {method}: {len(missing)} tensors missing, "
            f"{len(unexpected)} unexpected ({example}); a checkpoint of another method or network?"
        )
    differ = [k for k, v in own.items() if tuple(saved[k].shape) != tuple(v.shape)]
    if differ:
        k = differ[0]
        raise CheckpointError(
            f"checkpoint {name} does not fit this {method}: {k} has shape {tuple(saved[k].shape)} there, "
            f"{tuple(own[k].shape)} here ({len(differ)} tensors differ); another data shape or network size?"
        )
