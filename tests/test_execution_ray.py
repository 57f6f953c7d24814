from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

import search_spaces
from nas.data.datasets import ImageData, load_digits_data
from nas.errors import ConfigError
from nas.execution import LocalExecutor
from nas.execution.placement import NodeExclusiveExecutor
from nas.execution.ray_executor import RayExecutor
from nas.measure.evaluate import measure_configs
from nas.measure.latency import LatencyProtocol
from nas.measure.targets import HardwareTarget, default_registry
from nas.results import ResultStore
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, resources={"bench_box": 1}, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def top1(supernet: Supernet, data: ImageData, config: SubnetConfig) -> tuple[str, float]:
    """Validation top-1 of the exported subnet (single-threaded, so results are bitwise)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = data.tensors("val")
        with torch.inference_mode():
            pred = supernet.export(config).eval()(x).argmax(dim=1)
        return config.key, float((pred == y).float().mean())
    finally:
        torch.set_num_threads(previous)


def test_ray_accuracy_equals_local(ray_cluster: None) -> None:
    torch.manual_seed(0)
    space = search_spaces.get("tiny_cnn")
    fn = functools.partial(top1, Supernet(space).eval(), load_digits_data(seed=0))
    configs = space.sample_many(6, np.random.default_rng(0))
    local = LocalExecutor().map(fn, configs)
    remote = RayExecutor(num_cpus=1).map(fn, configs)
    assert remote == local
    assert len({acc for _, acc in local}) > 1  # different configs, different accuracies


def _touch(path: Path, i: int) -> int:
    (path / f"{i}.done").touch()
    return i


def test_missing_resource_raises_before_any_task(ray_cluster: None, tmp_path: Path) -> None:
    fn = functools.partial(_touch, tmp_path)
    for executor in (
        RayExecutor(resources={"rpi4": 1}),
        NodeExclusiveExecutor.for_target(HardwareTarget("rpi4", resource="rpi4")),
    ):
        with pytest.raises(ConfigError) as info:
            executor.map(fn, [0, 1, 2])
        assert "'rpi4'" in str(info.value) and "bench_box" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _interval(i: int) -> tuple[int, float, float]:
    start = time.monotonic()
    time.sleep(0.2)
    return i, start, time.monotonic()


def _meet(path: Path, i: int, timeout_s: float = 60.0) -> bool:
    """Announce task ``i`` and wait for the other of two tasks: True if both ran at once."""
    (path / f"{i}.started").touch()
    other = path / f"{1 - i}.started"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if other.exists():
            return True
        time.sleep(0.01)
    return False


def test_node_exclusive_tasks_never_overlap(ray_cluster: None, tmp_path: Path) -> None:
    out = NodeExclusiveExecutor(resources={"bench_box": 1}).map(_interval, list(range(4)))
    assert [i for i, _, _ in out] == [0, 1, 2, 3]
    spans = sorted((s, e) for _, s, e in out)
    assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(spans))
    # the plain executor does run two 1-CPU tasks at once on the same 2-CPU node: each of two
    # tasks waits for the other to start, which only both see if they run concurrently (a
    # rendezvous, not a timing guess that a loaded machine can break)
    met = RayExecutor(num_cpus=1).map(functools.partial(_meet, tmp_path), [0, 1])
    assert met == [True, True]


def test_latency_measurement_through_node_exclusive_placement(
    ray_cluster: None, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    space = search_spaces.get("tiny_cnn")
    target = default_registry().extended([HardwareTarget("box", resource="bench_box")]).get("box")
    store = ResultStore(tmp_path / "r.jsonl")
    configs = [space.smallest(), space.largest()]
    out = measure_configs(
        Supernet(space).eval(),
        configs,
        target,
        store,
        protocol=LatencyProtocol(warmup=1, repeats=3, noise_cv=100.0),
        executor=NodeExclusiveExecutor.for_target(target),
    )
    assert [e.target for e in out] == ["box", "box"] and all(
        e.metrics["latency_ms"] > 0 for e in out
    )
    assert len(ResultStore(tmp_path / "r.jsonl")) == 2


def _slow_square(x: int) -> int:
    time.sleep(2.0 if x == 0 else 0.0)
    return x * x


@pytest.mark.parametrize("make", [LocalExecutor, lambda: RayExecutor(num_cpus=1)])
def test_on_result_reports_every_call_as_it_finishes(ray_cluster: None, make) -> None:
    seen: list[tuple[int, int]] = []
    out = make().map(_slow_square, [0, 1, 2, 3], on_result=lambda i, r: seen.append((i, r)))
    assert out == [0, 1, 4, 9]  # input order
    assert sorted(seen) == [(0, 0), (1, 1), (2, 4), (3, 9)]  # every call once, index and result
    if not isinstance(make, type):  # Ray: the slow first call finishes after a quicker one
        assert seen[0][0] != 0
