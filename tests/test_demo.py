"""The main job end to end (tiny budget), and its convergence goals (slow)."""

import pytest
from paths import EXPERIMENTS

from lbt_lightning import demo


def test_demo_prints_table_and_writes_png(tmp_cwd, capsys):
    results = demo.run(
        ["--experiments", str(EXPERIMENTS), "--out", str(tmp_cwd / "out"), "--trainer.limit_train_batches=3",
         "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=64"]
    )  # fmt: skip
    assert [r["method"] for r in results] == ["GAN", "LBT", "LBT-GAN"]
    assert all(r["iterations"] == 3 for r in results)
    out = capsys.readouterr().out
    assert "| method | iterations |" in out and "| LBT-GAN | 3 |" in out
    assert (tmp_cwd / "out" / "demo.png").stat().st_size > 10_000
    assert (tmp_cwd / "out" / "results.json").exists()


@pytest.mark.slow
@pytest.mark.xfail(
    reason="not reached in the 1,500-iteration demo budget: at seed 12345 GAN 17/25, LBT 14/25, "
    "LBT-GAN 17/25 modes, all at 1.4-1.8% HQ (README, Demo); the goal stays here as the target",
    strict=False,
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_goals(seed, tmp_cwd, capsys):
    """LBT and LBT-GAN cover every mode and LBT-GAN reaches >= 80% HQ; the GAN is printed beside."""
    results = demo.run(
        ["--experiments", str(EXPERIMENTS), "--out", str(tmp_cwd / "out"), f"--seed_everything={seed}",
         "--trainer.enable_progress_bar=false"]
    )  # fmt: skip
    by_name = {r["method"]: r for r in results}
    with capsys.disabled():
        print(f"\nseed {seed}\n" + demo.table(results))
    for name in ("LBT", "LBT-GAN"):
        assert by_name[name]["modes"] == by_name[name]["num_modes"], name
    assert by_name["LBT-GAN"]["hq"] >= 0.8
