"""Shared fixtures: seeded RNG, one torch thread, a bare sys.argv, a temporary working directory, devices,
benchmark scripts as modules."""

import importlib
import logging
import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state and leaves the global one untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread: the tests use tiny tensors, and on a shared 2-core machine a second
    spinning thread made them 10-20x slower (e.g. 80 ms vs 2 ms per unrolled teaching loss)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _bare_argv(monkeypatch):
    """The CLI tests call ``main(args)`` in-process; pytest's own options left in ``sys.argv`` would
    make LightningCLI warn that it got both (``lightning fit ...`` from a shell has only one)."""
    monkeypatch.setattr(sys, "argv", sys.argv[:1])


@pytest.fixture
def benchmark_script(monkeypatch):
    """Imports ``benchmarks/<name>.py`` as a module; the benchmarks' quieter Lightning loggers and
    the imported modules (the script, ``common``, ``probes``) are restored afterwards."""
    from paths import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    imported = []

    def load(name: str):
        imported.append(name)
        return importlib.import_module(name)

    yield load
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    for name in (*imported, "common", "probes"):
        sys.modules.pop(name, None)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run in a temporary directory so CLI runs write their logs there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> torch.device:
    """Each device to test on: cpu, and cuda when a GPU is present (``make gpu-check`` runs the
    ``-k cuda`` ones there). Float64 finite-difference checks stay on the CPU."""
    return torch.device(request.param)


@pytest.fixture
def quick_compile(monkeypatch):
    """``unroll_backend="compiled"`` builds the compiled unroll with torch.compile's ``aot_eager``
    backend: the same torch.func code, traced by Dynamo and AOTAutograd, without Inductor's
    minutes of code generation on 2 CPU cores."""
    from functools import partial

    from lbt_lightning.unroll import compiled

    monkeypatch.setattr(compiled, "CompiledUnroll", partial(compiled.CompiledUnroll, compile_backend="aot_eager"))
