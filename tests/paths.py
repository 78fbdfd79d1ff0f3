"""Repository paths used by the tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
