"""Two CPU processes (gloo) through Lightning's DDP: replicas stay identical, metrics use both ranks."""

import subprocess
import sys

import pytest
import torch
from paths import EXPERIMENTS, child_env

CONFIGS = {"gan": "ring/gan.yaml", "lbt": "ring/lbt.yaml", "lbt_gan": "ring/lbt_gan.yaml"}
SMALL = {
    "gan": ["--model.init_args.discriminator.init_args.hidden=[32]"],
    "lbt": ["--model.init_args.estimator.init_args.hidden=[32]", "--model.init_args.unroll_steps=2"],
    "lbt_gan": [
        "--model.init_args.estimator.init_args.hidden=[32]",
        "--model.init_args.discriminator.init_args.hidden=[32]",
        "--model.init_args.unroll_steps=2",
    ],
}


def flatten(state, prefix=""):
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from flatten(v, f"{prefix}.{k}")
    elif isinstance(state, list | tuple):
        for i, v in enumerate(state):
            yield from flatten(v, f"{prefix}.{i}")
    else:
        yield prefix, torch.tensor(float(state)) if isinstance(state, int | float) else state


@pytest.mark.parametrize(
    "method, backend",
    [
        ("lbt_gan", "eager"),  # every kind of update: the discriminator, the estimator, the generator's two terms
        *(pytest.param(m, "eager", marks=pytest.mark.slow) for m in ("gan", "lbt")),  # 9 s each
        pytest.param("lbt", "compiled", marks=pytest.mark.slow),
    ],
)
def test_ddp_replicas_are_identical(method, backend, tmp_path):
    out = tmp_path / "dump"
    cmd = [
        sys.executable, "-m", "lbt_lightning", "fit",
        "--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / CONFIGS[method]),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.max_steps=3", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--data.init_args.batch_size=64",
        "--model.init_args.generator.init_args.hidden=[32]",
        "--trainer.callbacks=lbt_lightning.callbacks.ModeCoverageCallback",
        "--trainer.callbacks.every_n_iterations=3", "--trainer.callbacks.num_samples=501",
        "--trainer.callbacks+=ddp_dump.DumpRankState", f"--trainer.callbacks.out_dir={out}",
        *SMALL[method],
        *([f"--model.init_args.unroll_backend={backend}"] if method != "gan" else []),
    ]  # fmt: skip
    env = child_env()  # tests/ for ddp_dump
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["iteration"] == 3
    a, b = (dict(flatten({"m": r["module"], "o": r["optimizers"]})) for r in ranks)
    assert a.keys() == b.keys()
    if method != "gan":
        assert any(".student.v" in k for k in a) and any(".student.t" in k for k in a)
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{key} differs between ranks"
    # 501 samples over 2 ranks: each draws 251, the metric sees both ranks' 502
    assert ranks[0]["num_evaluated"] == ranks[1]["num_evaluated"] == 501


def _all_finite_on_rank(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from lbt_lightning.methods import GAN
    from lbt_lightning.networks import MLPDiscriminator, MLPGenerator

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = GAN(MLPGenerator(hidden=[4]), MLPDiscriminator(hidden=[4]))
        local = torch.tensor([1.0, float("nan") if rank == 1 else 2.0])
        results[rank] = (model.all_finite([local]), model.all_finite([torch.ones(2)]))
    finally:
        dist.destroy_process_group()


def test_a_non_finite_value_on_one_rank_skips_the_update_on_every_rank():
    """One all-reduced flag: rank 0's values are finite, rank 1's are not, and both skip."""
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        results = manager.dict()
        procs = [ctx.Process(target=_all_finite_on_rank, args=(r, port, results)) for r in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]
        assert dict(results) == {0: (False, True), 1: (False, True)}


@pytest.mark.slow  # two 2-process runs, ~15 s each here
@pytest.mark.filterwarnings("ignore")
def test_ddp_resume_is_exact_on_every_rank(tmp_path):
    """A 2-process LBT-GAN resumed from its iteration-2 checkpoint ends where the uninterrupted run
    ends, on both ranks: parameters, optimizer states and each rank's random state."""

    def run(name: str, *extra: str) -> list[dict]:
        out = tmp_path / name
        cmd = [
            sys.executable, "-m", "lbt_lightning", "fit",
            "--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / CONFIGS["lbt_gan"]),
            "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp_find_unused_parameters_true",
            "--trainer.max_steps=4", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
            "--data.init_args.batch_size=64", "--model.init_args.generator.init_args.hidden=[32]",
            "--model.init_args.unroll_backend=eager", *SMALL["lbt_gan"],
            "--trainer.callbacks=lbt_lightning.callbacks.IterationCheckpoint",
            "--trainer.callbacks.every_n_train_steps=2", "--trainer.callbacks.save_top_k=-1",
            f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}",
            "--trainer.callbacks+=ddp_dump.DumpRankState", f"--trainer.callbacks.out_dir={out}",
            *extra,
        ]  # fmt: skip
        result = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    uninterrupted = run("a")
    resumed = run("b", f"--ckpt_path={tmp_path / 'ckpt' / 'step=2.ckpt'}")
    for rank in (0, 1):
        a, b = (dict(flatten({"m": r["module"], "o": r["optimizers"], "rng": r["rng"]})) for r in
                (uninterrupted[rank], resumed[rank]))  # fmt: skip
        assert a.keys() == b.keys() and resumed[rank]["iteration"] == 4
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), f"rank {rank}: {key} differs after resume"


def test_two_nodes_started_the_way_a_cluster_starts_them_stay_identical(tmp_path):
    """Two "nodes" of one CPU process each, launched separately as srun or torchrun would (Lightning
    reads MASTER_ADDR, MASTER_PORT, NODE_RANK and LOCAL_RANK; ``num_nodes`` × ``devices`` ranks): the
    replicas end identical and both see the whole world."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "dump"
    cmd = [
        sys.executable, "-m", "lbt_lightning", "fit",
        "--config", str(EXPERIMENTS / "trainer.yaml"), "--config", str(EXPERIMENTS / CONFIGS["lbt_gan"]),
        "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=2",
        "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.max_steps=2",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
        "--data.init_args.batch_size=64", "--model.init_args.generator.init_args.hidden=[32]", *SMALL["lbt_gan"],
        "--model.init_args.unroll_backend=eager",
        "--trainer.callbacks=ddp_dump.DumpRankState", f"--trainer.callbacks.out_dir={out}",
    ]  # fmt: skip
    nodes = []
    for node in (0, 1):
        env = child_env() | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node)}
        env |= {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}
        nodes.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=600) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2 and ranks[1]["iteration"] == 2
    a, b = (dict(flatten({"m": r["module"], "o": r["optimizers"]})) for r in ranks)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{key} differs between the nodes"
