"""Train the MNIST digit classifier used to count Stacked MNIST modes: ``python -m lbt_lightning.programs.classifier``.

Users (internet or the full MNIST files in --root) train on the 60,000 training digits and validate on
the 10,000 test digits::

    python -m lbt_lightning.programs.classifier --root data/mnist --download --out checkpoints/smnist_classifier.pt

Offline, with only the MNIST test set (as on the development machine and in the tests), train on 8,000
test digits and validate on the other 2,000 (a seeded split; the held-out indices go into the
checkpoint)::

    python -m lbt_lightning.programs.classifier --root ../shared/data/mnist --train-on test \
        --out checkpoints/smnist_classifier.pt
"""

import argparse
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lbt_lightning.data.stacked_mnist import download_mnist, load_mnist
from lbt_lightning.networks.classifier import ARCHS, DigitClassifier, save_classifier


class DigitClassifierModule(pl.LightningModule):
    """Cross-entropy training of a :class:`DigitClassifier` with Adam (paper: lr 3e-4, batch 100)."""

    def __init__(self, arch: str = "small", lr: float = 1e-3):
        super().__init__()
        self.classifier, self.lr = DigitClassifier(arch), lr
        self.accuracy = MulticlassAccuracy(num_classes=10, average="micro")

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.classifier(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.accuracy.update(self.classifier(x), y)
        self.log("val/acc", self.accuracy, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def splits(root: str, train_on: str, val_size: int, seed: int):
    """(train images, train labels), (val images, val labels), held-out test indices or None."""
    if train_on == "train":
        return load_mnist(root, "train"), load_mnist(root, "test"), None
    x, y = load_mnist(root, "test")
    if not 0 < val_size < len(x):
        raise ValueError(f"--val-size must be in 1..{len(x) - 1}, got {val_size}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, val = order[:-val_size], order[-val_size:]
    return (x[train], y[train]), (x[val], y[val]), val.sort().values


def loader(images, labels, batch_size: int, shuffle: bool) -> DataLoader:
    data = TensorDataset(images.unsqueeze(1).float() / 255.0, labels)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def train(args: argparse.Namespace) -> dict:
    """Train, save the checkpoint to ``args.out`` and return what was measured."""
    if args.download:
        download_mnist(args.root)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed, verbose=False)
    (xt, yt), (xv, yv), val_indices = splits(args.root, args.train_on, args.val_size, args.seed)
    module = DigitClassifierModule(args.arch, args.lr)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=args.progress,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=args.epochs,  # validate once, at the end
        devices=1,
    )
    start = time.perf_counter()
    trainer.fit(module, loader(xt, yt, args.batch_size, True), loader(xv, yv, 1000, False))
    seconds = time.perf_counter() - start
    accuracy = float(trainer.callback_metrics["val/acc"])
    info = {"val_accuracy": accuracy, "train_seconds": seconds, "train_on": args.train_on}
    info |= {"train_size": len(xt), "val_size": len(xv), "epochs": args.epochs, "seed": args.seed}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_classifier(module.classifier.cpu(), args.out, val_indices=val_indices, **info)
    return info


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lbt_lightning.programs.classifier", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", required=True, help="folder with the MNIST IDX files (.gz or not)")
    parser.add_argument("--out", required=True, help="checkpoint path, e.g. checkpoints/smnist_classifier.pt")
    parser.add_argument("--download", action="store_true", help="download MNIST into --root with torchvision")
    parser.add_argument("--train-on", choices=("train", "test"), default="train")
    parser.add_argument("--val-size", type=int, default=2000, help="held-out test digits with --train-on test")
    parser.add_argument("--arch", choices=ARCHS, default="small")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)  # PAPER.md §5.2
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy shared machine)")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    info = train(parse(argv))
    print(
        f"val accuracy {info['val_accuracy']:.4f} on {info['val_size']} digits after {info['epochs']} epochs "
        f"on {info['train_size']} ({info['train_seconds']:.1f} s)"
    )
    return info


if __name__ == "__main__":
    main()
