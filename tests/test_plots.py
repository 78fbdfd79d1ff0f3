"""Plots: importing the callbacks leaves matplotlib's backend alone, and figures save without one."""

import importlib.util
import pkgutil

import matplotlib
import pytest
import torch

import lbt_lightning.callbacks
from lbt_lightning.callbacks.sample_plots import scatter_figure


def test_importing_the_callbacks_does_not_switch_the_backend(monkeypatch):
    """A notebook user keeps inline plots: no module of the package calls ``matplotlib.use``."""
    monkeypatch.setattr(matplotlib, "use", lambda *args, **kwargs: pytest.fail("matplotlib.use at import"))
    for info in pkgutil.iter_modules(lbt_lightning.callbacks.__path__, "lbt_lightning.callbacks."):
        spec = importlib.util.find_spec(info.name)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # a fresh copy, sys.modules untouched


def test_scatter_figure_saves_a_png(tmp_path):
    fig = scatter_figure(torch.randn(50, 2), torch.zeros(1, 2), title="t")
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
