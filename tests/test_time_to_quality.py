"""``benchmarks/time_to_quality.py`` end to end on a tiny budget, and its goal bookkeeping."""

import json

import pytest


@pytest.fixture
def ttq(benchmark_script):
    return benchmark_script("time_to_quality")


def test_tiny_run_writes_curves_table_and_plot(ttq, tmp_path, capsys):
    out = tmp_path / "ttq.json"
    ttq.main(["--runs", "ring:gan@1", "--seeds", "0", "--jobs", "1", "--every", "20", "--out", str(out),
              "--set=--data.init_args.batch_size=64"])  # fmt: skip
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["budget"] == 1.0 and run["curve"][-1]["cpu_s"] >= 1.0
    assert all(p["iteration"] % 20 == 0 for p in run["curve"][:-1])
    assert {"modes_veegan", "modes_pacgan", "hq", "kl", "counts"} <= set(run["curve"][0])
    assert set(ttq.GOALS) <= set(run["summary"])
    assert "| ring | gan | 1 |" in capsys.readouterr().out
    assert (tmp_path / "ttq.png").stat().st_size > 10_000


def test_goals_are_the_first_evaluation_that_reaches_them(ttq):
    keys = ("iteration", "cpu_s", "modes_veegan", "modes_pacgan", "hq", "kl")
    points = [
        (100, 1, 8, 3, 0.5, 0.3),
        (600, 6, 8, 8, 0.85, 0.04),
        (900, 9, 8, 6, 0.92, 0.2),
        (1200, 12, 8, 8, 0.95, 0.01),
    ]
    curve = [dict(zip(keys, p, strict=True)) for p in points]
    s = ttq.summarise(curve, num_modes=8, settle_s=5)
    assert (s["all_modes"]["cpu_s"], s["hq80"]["cpu_s"], s["hq90"]["cpu_s"], s["kl05"]["cpu_s"]) == (6, 6, 9, 6)
    assert s["min_modes_pacgan"] == 6 and s["max_kl"] == 0.2 and s["best_hq"] == 0.95


def test_a_malformed_run_is_refused(ttq):
    with pytest.raises(SystemExit):
        ttq.main(["--runs", "moon:gan"])
    with pytest.raises(SystemExit):
        ttq.main(["--runs", "ring:gan", "--settle", "1.5"])


def test_every_suite_names_configs_that_exist(ttq):
    root = ttq.RESULTS.parents[1] / "experiments"
    for name, suite in ttq.SUITES.items():
        for run in suite["runs"]:
            data, config = run.partition("@")[0].partition(",")[0].split(":")
            assert (root / ttq.DATASETS[data][0] / f"{config}.yaml").is_file(), (name, run)
    with pytest.raises(SystemExit):
        ttq.main(["--suite", "moon"])
