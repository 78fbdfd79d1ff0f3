"""Shared fixtures: seeded RNG, a temporary working directory."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state and leaves the global one untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run in a temporary directory so CLI runs write their logs there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
