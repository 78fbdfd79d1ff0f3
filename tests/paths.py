"""Repository paths used by the tests."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def child_env() -> dict[str, str]:
    """The environment of a test's ``python -m lbt_lightning`` child process: one torch thread,
    and tests/ (for the test-only callbacks the child imports) ahead of, not instead of, the
    caller's PYTHONPATH, which may be how the package itself is found."""
    python_path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1"}


def _mnist_dir() -> Path:
    """The real MNIST test set: $LBT_MNIST_DIR, else ../shared/data/mnist next to the repository,
    else /work/shared/data/mnist (where this project's machines keep it)."""
    candidates = [os.environ.get("LBT_MNIST_DIR"), ROOT.parent / "shared/data/mnist", "/work/shared/data/mnist"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return ROOT.parent / "shared/data/mnist"


MNIST_DIR = _mnist_dir()
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"the MNIST test set is not at {MNIST_DIR}; set LBT_MNIST_DIR to the folder with its IDX files",
)
