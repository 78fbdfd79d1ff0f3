"""Lightning's counters count iterations: max_steps, extending a finished run, old checkpoints, logs."""

import csv
import sys

import pytest
import torch
from paths import EXPERIMENTS
from test_checkpoints import SMALL

from lbt_lightning.lightning.checkpoint_io import load_checkpoint_file
from lbt_lightning.lightning.cli import main


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning"])


def fit(method: str, root, *extra: str):
    args = ["fit", "--config", str(EXPERIMENTS / f"ring/{method}.yaml"), *SMALL[method]]
    args += ["--data.init_args.batch_size=32", "--model.init_args.generator.init_args.hidden=[16]"]
    args += ["--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}"]
    return main([*args, *extra])


def last_checkpoint(root) -> dict:
    (path,) = sorted(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)[-1:]
    return load_checkpoint_file(path)


@pytest.mark.parametrize("method", ["gan", "lbt", "lbt_gan"])
def test_max_steps_trains_that_many_iterations_and_a_larger_one_extends_the_run(method, tmp_path):
    extra = ["--model.init_args.teach_every=2"] if method == "lbt_gan" else []
    straight = fit(method, tmp_path / "straight", "--trainer.max_steps=6", *extra)
    assert straight.trainer.global_step == 6
    fit(method, tmp_path / "run", "--trainer.max_steps=3", *extra)
    first = last_checkpoint(tmp_path / "run")
    assert first["global_step"] == 3
    last = next((tmp_path / "run").rglob("last.ckpt"))
    extended = fit(method, tmp_path / "run", "--trainer.max_steps=6", f"--ckpt_path={last}", *extra)
    assert extended.trainer.global_step == 6
    assert last_checkpoint(tmp_path / "run")["global_step"] == 6
    for name, value in straight.model.state_dict().items():
        assert torch.equal(extended.model.state_dict()[name], value), name


def test_a_model_argument_that_differs_from_the_checkpoint_is_refused(tmp_path, capsys):
    fit("lbt_gan", tmp_path, "--trainer.max_steps=1")
    last = next(tmp_path.rglob("last.ckpt"))
    with pytest.raises(SystemExit) as exit_info:
        fit("lbt_gan", tmp_path, "--trainer.max_steps=2", f"--ckpt_path={last}", "--model.init_args.gan_weight=0.5")
    message = str(exit_info.value.code)
    assert message.startswith("error: model.init_args.gan_weight: 0.5 given") and "0.1" in message
    assert "\n" not in message
    # the same arguments as the checkpoint's resume
    assert fit("lbt_gan", tmp_path, "--trainer.max_steps=2", f"--ckpt_path={last}").trainer.global_step == 2


def test_a_checkpoint_that_counted_optimizer_steps_resumes_counting_iterations(tmp_path):
    fit("gan", tmp_path / "new", "--trainer.max_steps=2")
    path = next((tmp_path / "new").rglob("last.ckpt"))
    checkpoint = torch.load(path, weights_only=False)
    # as written before global_step counted iterations: a buffer and two optimizer steps per iteration
    checkpoint["state_dict"]["iteration"] = torch.tensor(2)
    checkpoint["global_step"] = 4
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.manual_optimization.optim_step_progress"]
    for part in ("total", "current"):
        progress[part] |= {"ready": 4, "completed": 4}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    resumed = fit("gan", tmp_path / "resumed", "--trainer.max_steps=3", f"--ckpt_path={old}")
    assert resumed.trainer.global_step == 3
    straight = fit("gan", tmp_path / "straight", "--trainer.max_steps=3")
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_checkpoint_with_the_teacher_layout_resumes_with_the_same_state(tmp_path):
    """Checkpoints written before the estimator's state moved to ``student`` as flat vectors
    (``teacher.m0``, ``teacher.v0``, ... per parameter), with the removed ``unroll_backend: auto``,
    resume where they stopped."""
    new = fit("lbt", tmp_path / "new", "--trainer.max_steps=2")
    path = next((tmp_path / "new").rglob("last.ckpt"))
    checkpoint = torch.load(path, weights_only=False)
    state = checkpoint["state_dict"]
    sizes = [p.numel() for p in new.model.estimator.parameters()]
    for moment in ("m", "v"):
        for i, part in enumerate(state.pop(f"student.{moment}").split(sizes)):
            state[f"student.{moment}{i}"] = part.clone()
    for key in [k for k in state if k.startswith("student.")]:
        state["teacher." + key.removeprefix("student.")] = state.pop(key)
    checkpoint["hyper_parameters"]["unroll_backend"] = "auto"  # the default of those releases
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    resumed = fit("lbt", tmp_path / "resumed", "--trainer.max_steps=3", f"--ckpt_path={old}")
    straight = fit("lbt", tmp_path / "straight", "--trainer.max_steps=3")
    assert float(resumed.model.student.t) == float(straight.model.student.t) > 0
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def metrics_rows(root) -> list[dict]:
    (path,) = root.rglob("metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_csv_log_has_every_logged_iteration_the_last_one_and_rows_in_order(tmp_path):
    fit("gan", tmp_path, "--trainer.max_steps=7", "--trainer.log_every_n_steps=3")
    rows = metrics_rows(tmp_path)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps)
    assert sorted({int(r["step"]) for r in rows if r.get("train/g_loss")}) == [3, 6, 7]
    assert [int(r["step"]) for r in rows if r.get("val/hq")] == [7]  # every 500 iterations and at the end


def test_a_run_shorter_than_log_every_n_steps_logs_its_losses(tmp_path):
    fit("lbt", tmp_path, "--trainer.max_steps=2")
    rows = metrics_rows(tmp_path)
    assert [int(r["step"]) for r in rows if r.get("train/teach_loss")] == [2]
