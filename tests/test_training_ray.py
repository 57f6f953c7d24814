"""Supernet training on real Ray Train: DDP gradients, resources, kill -9 resume, two nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray
import ray.cloudpickle
import torch
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer
from safetensors.torch import load_file, save_file

import search_spaces
from nas.data.datasets import load_digits_data
from nas.errors import ConfigError
from nas.execution.ray_training import train_supernet
from nas.supernets.base import Supernet
from nas.training.checkpoint import latest_checkpoint, load_checkpoint, load_supernet
from nas.training.config import TrainConfig
from nas.training.sampling import sandwich_configs
from nas.training.step import SandwichObjective, sandwich_backward
from tests.ray_cluster import two_node_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[1]
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


GLOBAL_BATCH = 64


def _first_step_gradients(loop_config: dict) -> None:
    """Ray Train worker: one sandwich step on this rank's half of a fixed global batch."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(1)
    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    model = Supernet(space)
    ddp = ray.train.torch.prepare_model(
        SandwichObjective(model), parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    x, y = load_digits_data(seed=0).tensors("train")
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    largest, students = sandwich_configs(space, seed=0, step=0, n_random=2)
    sandwich_backward(ddp, x[shard], y[shard], largest, students)
    if rank == 0:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        save_file({n: g.contiguous() for n, g in grads.items()}, loop_config["out"])
    ray.train.report({"rank": rank})


def test_ddp_two_workers_equal_one_process_on_the_same_global_batch(local_ray, tmp_path) -> None:
    out = tmp_path / "ddp_grads.safetensors"
    trainer = TorchTrainer(
        _first_step_gradients,
        train_loop_config={"out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path / "ray"), name="grads"),
    )
    trainer.fit()
    ddp = load_file(out)
    # One process, same global batch, as two micro-batches (BatchNorm statistics per shard, as
    # each DDP worker computes them on its own shard).
    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    model = Supernet(space)
    x, y = load_digits_data(seed=0).tensors("train")
    largest, students = sandwich_configs(space, seed=0, step=0, n_random=2)
    sandwich_backward(
        SandwichObjective(model),
        x[:GLOBAL_BATCH],
        y[:GLOBAL_BATCH],
        largest,
        students,
        micro_batches=2,
    )
    local = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(local) <= set(ddp)
    for name, grad in local.items():
        torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in local.values()) > 0


def test_two_local_workers_train_and_report_metrics(local_ray, tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    data = load_digits_data(seed=0)
    config = TrainConfig(epochs=1, batch_size=64, n_random=1, calib_images=128)
    result = train_supernet(space, data, config, run_dir=tmp_path / "run", num_workers=2)
    assert list(result.metrics["epoch"]) == [0]
    assert int(result.metrics["workers"].iloc[0]) == 2
    assert load_checkpoint(result.checkpoint).epoch == 1
    supernet, _ = load_supernet(result.checkpoint, space=space)
    assert isinstance(supernet, Supernet)
    # A finished run is not trained again.
    again = train_supernet(space, data, config, run_dir=tmp_path / "run", num_workers=2)
    assert again.checkpoint == result.checkpoint


def test_too_many_workers_fail_before_training(local_ray, tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    with pytest.raises(ConfigError, match=r"ray.num_workers=8 needs 8 CPUs"):
        train_supernet(
            space, load_digits_data(), TrainConfig(epochs=1), run_dir=tmp_path / "r", num_workers=8
        )
    assert not list((tmp_path / "r").rglob("state.json"))
    with pytest.raises(ConfigError, match="divisible"):
        train_supernet(
            space,
            load_digits_data(),
            TrainConfig(epochs=1, batch_size=63),
            run_dir=tmp_path / "r",
            num_workers=2,
        )


TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    import search_spaces
    from nas.data.datasets import load_digits_data
    from nas.execution.ray_training import train_supernet
    from nas.training.config import TrainConfig

    result = train_supernet(
        search_spaces.get("tiny_cnn"),
        load_digits_data(),
        TrainConfig(epochs=4, batch_size=32, n_random=2, calib_images=128),
        run_dir=sys.argv[1],
        num_workers=1,
    )
    print("FINAL", result.checkpoint)
    """
)


def _metrics_rows(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    return len(pd.read_csv(path)) if path.exists() else 0


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_loses_at_most_one_epoch(tmp_path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while _metrics_rows(run_dir) < 2:  # two epochs finished and checkpointed
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.2)
    time.sleep(1.0)  # well inside epoch 3 (an epoch takes several seconds here)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # let the orphaned Ray processes notice the dead driver
    finished = load_checkpoint(latest_checkpoint(run_dir / "ray")).epoch
    assert finished >= 2
    assert finished < 4, "the run finished before the kill; the test proves nothing"
    done = subprocess.run(
        [sys.executable, str(script), str(run_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    final = load_checkpoint(latest_checkpoint(run_dir / "ray"))
    assert final.epoch == 4
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1, 2, 3]
    attempts = sorted(p.name for p in (run_dir / "ray").glob("attempt_*"))
    assert attempts == ["attempt_000", "attempt_001"]
    redone = sorted(p.name for p in (run_dir / "ray" / "attempt_001").glob("epoch_*"))
    # The resumed attempt trains only what the killed one had not checkpointed: at most the
    # epoch in flight is lost.
    assert redone[0] == f"epoch_{finished + 1:04d}"
    supernet, _ = load_supernet(final.path)
    x, _ = load_digits_data().tensors("val")
    space = supernet.space
    assert supernet.eval()(x[:8], space.smallest()).shape == (8, 10)


@pytest.mark.slow
def test_training_spans_a_two_node_cluster(tmp_path) -> None:
    with two_node_cluster(cpus_per_node=1) as address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            assert sum(n["Alive"] for n in ray.nodes()) == 2
            result = train_supernet(
                search_spaces.get("tiny_cnn"),
                load_digits_data(),
                TrainConfig(epochs=1, batch_size=64, n_random=1, calib_images=128),
                run_dir=tmp_path / "run",
                num_workers=2,  # one CPU per node: one worker on each node
            )
        finally:
            ray.shutdown()
    assert int(result.metrics["workers"].iloc[0]) == 2
    assert load_checkpoint(result.checkpoint).epoch == 1


def _train_workers() -> list[int]:
    """PIDs of Ray Train worker processes on this (Linux) machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::RayTrainWorker"):
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_last_checkpoint(tmp_path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _metrics_rows(run_dir) < 2 or not _train_workers():
            assert proc.poll() is None, "training ended before a worker could be killed"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.2)
        for pid in _train_workers():
            os.kill(pid, signal.SIGKILL)  # the Ray Train worker, not the driver
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-3000:]
    assert "FINAL" in output
    # Ray Train restarted the worker group inside the same run (FailureConfig), from the last
    # reported checkpoint: one attempt, every epoch once, the final checkpoint complete.
    assert sorted(p.name for p in (run_dir / "ray").glob("attempt_*")) == ["attempt_000"]
    assert list(pd.read_csv(run_dir / "metrics.csv")["epoch"]) == [0, 1, 2, 3]
    assert load_checkpoint(latest_checkpoint(run_dir / "ray")).epoch == 4
