"""Path equivalence: run_search through RayExecutor equals run_search through LocalExecutor."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from nas.execution.local import LocalExecutor
from nas.search import ResultStore, make_searcher, run_search
from tests.test_search_problems import analytic_problem, evaluator


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from nas.execution.ray_executor import RayExecutor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()


@pytest.mark.ray
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["pymoo-nsga2", "random"])
def test_ray_executor_equals_local(ray_executor: object, name: str) -> None:
    problem = analytic_problem(constrained=True)
    results = [
        run_search(
            make_searcher(name, problem, seed=4),
            evaluator(),
            ResultStore(),
            budget=36,
            executor=executor,  # type: ignore[arg-type]
        )
        for executor in (LocalExecutor(), ray_executor)
    ]
    local, remote = results
    assert [c.key for c in local.configs] == [c.key for c in remote.configs]
    np.testing.assert_array_equal(local.metrics, remote.metrics)
    np.testing.assert_array_equal(local.front, remote.front)
    assert local.history["hypervolume"].tolist() == remote.history["hypervolume"].tolist()
    assert local.n_fresh == remote.n_fresh == 36
