"""``benchmarks/gpu_check.py --device cpu --smoke``: every step of the GPU check, with tiny networks."""

import json

import pytest


@pytest.fixture
def gpu_check(benchmark_script):
    return benchmark_script("gpu_check")


@pytest.mark.slow  # runs the benchmark script end to end (~9 s)
def test_smoke_run_prints_the_table_and_writes_every_entry(gpu_check, tmp_path, capsys):
    gpu_check.main(["--device", "cpu", "--smoke", "--out", str(tmp_path / "check.json")])
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["tests"]["returncode"] == 0, report["tests"]["summary"]
    rows = {(r["data"], r["precision"], r["method"], r["backend"]): r for r in report["rows"]}
    assert len(rows) == 2 * len(gpu_check.METHODS)  # CIFAR-10 in float32, the ring in bf16-mixed
    assert all(r["iteration"]["median_ms"] > 0 and r["x_gan"] > 0 for r in rows.values())
    assert rows[("ring", "bf16-mixed", "LBT-GAN", "compiled")]["x_gan"] > 0
    assert rows[("cifar10", "32-true", "LBT-GAN", "compiled")]["paper_run_hours"] > 0
    out = capsys.readouterr().out
    assert "device tests (cpu): 1 passed" in out and "300k h" in out
