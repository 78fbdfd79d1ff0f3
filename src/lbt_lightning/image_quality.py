"""FID (IS, KID) of a trained checkpoint: ``python -m lbt_lightning.image_quality --config ... --ckpt_path ...``."""

import argparse
import json

import torch
from torch import nn

from lbt_lightning.callbacks.fid import ImageQuality, inception_weights
from lbt_lightning.cli import main


def evaluate(args: list[str] | None = None) -> dict[str, float]:
    """Load the checkpoint into the model the configs describe and compute the metrics of the
    configs' :class:`ImageQuality` callback (or its defaults) on one device; prints JSON.

    Example:
        ``python -m lbt_lightning.image_quality --config experiments/trainer.yaml
        --config experiments/cifar10/lbt_gan.yaml --ckpt_path runs/lightning_logs/version_0/checkpoints/last.ckpt
        --num_samples 50000``
    """
    parser = argparse.ArgumentParser(
        prog="python -m lbt_lightning.image_quality",
        description="FID (and IS/KID if the config's ImageQuality asks for them) of a checkpoint.",
        epilog="Every other argument (--config, --data.init_args.root=..., ...) goes to the Lightning CLI.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`")
    parser.add_argument("--num_samples", type=int, help="generated and real images (default: the config's)")
    parser.add_argument("--feature_extractor_weights_path", help="local torch-fidelity Inception weights file")
    parser.add_argument("--inception_score", action="store_true", help="also compute IS")
    parser.add_argument("--kid", action="store_true", help="also compute KID")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    known, rest = parser.parse_known_args(args)
    cli = main(rest, run=False)
    callback = next((cb for cb in cli.trainer.callbacks if isinstance(cb, ImageQuality)), None) or ImageQuality()
    if known.num_samples is not None:
        callback.num_samples = known.num_samples
    if known.feature_extractor_weights_path is not None:
        callback.feature_extractor_weights_path = known.feature_extractor_weights_path
    callback.inception_score |= known.inception_score
    callback.kid |= known.kid

    model = cli.model
    checkpoint = torch.load(known.ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(known.device)
    datamodule = cli.datamodule
    datamodule.prepare_data()
    datamodule.setup("validate")
    weights = None
    if not isinstance(callback.feature, nn.Module):
        weights = inception_weights(callback.feature_extractor_weights_path, callback.download)
    callback.build(datamodule.data_shape, weights)
    values = {"iteration": int(getattr(model, "iteration", -1)), "num_samples": callback.num_samples}
    values |= callback.compute(model, datamodule)
    print(json.dumps(values))
    return values


if __name__ == "__main__":
    evaluate()
