"""SurrogateSearcher: replay, no repeats, constraints, large-space pool, bad options."""

from __future__ import annotations

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.pareto import non_dominated
from nas.search import ResultStore, SurrogateSearcher, run_search
from tests.test_search_problems import analytic_problem, evaluate, evaluator


def _keys(result: object) -> list[str]:
    return [c.key for c in result.configs]  # type: ignore[attr-defined]


def test_starts_random_then_asks_untold_batches() -> None:
    problem = analytic_problem()
    searcher = SurrogateSearcher(problem, seed=0, n_initial=8, batch_size=3, kind="ridge")
    first = searcher.ask()
    assert len(first) == 8 and len({c.key for c in first}) == 8
    F = problem.objective_matrix([evaluate(c) for c in first])
    searcher.tell(first, F)
    second = searcher.ask()
    assert len(second) == 3
    assert not {c.key for c in second} & {c.key for c in first}
    with pytest.raises(ConfigError, match="ask"):
        searcher.ask()
    with pytest.raises(ConfigError, match="configs of the last ask"):
        searcher.tell(list(reversed(second)), F[:3])


def test_same_seed_replays_and_seeds_differ() -> None:
    problem = analytic_problem(constrained=True)

    def run(seed: int, budget: int) -> list[str]:
        searcher = SurrogateSearcher(problem, seed=seed, n_initial=10, kind="ridge")
        return _keys(run_search(searcher, evaluator(), ResultStore(), budget=budget))

    a = run(1, 30)
    assert run(1, 40)[:30] == a
    assert run(2, 30) != a


def test_exhausts_a_small_space_without_repeats() -> None:
    problem = analytic_problem()
    size = problem.space.size()
    searcher = SurrogateSearcher(problem, seed=0, n_initial=40, batch_size=60, kind="ridge")
    result = run_search(searcher, evaluator(), ResultStore(), budget=size)
    assert len(result.configs) == size
    assert len(set(_keys(result))) == size
    assert searcher.ask() == []
    assert searcher.done


def test_proposals_follow_the_predicted_constraint() -> None:
    """cost is linear in the encoding, so ridge learns it: proposals stay at or inside the bound.

    The front lies on the bound (cost = 0.5), so proposals cluster there, a few a float's width
    or one option outside it; the random start spreads over the whole range up to 1.0.
    """
    problem = analytic_problem(constrained=True)
    searcher = SurrogateSearcher(problem, seed=3, n_initial=20, kind="ridge")
    result = run_search(searcher, evaluator(), ResultStore(), budget=60)
    proposed = result.metrics[20:, 1]  # cost_ms@toy of the predictor-chosen configs
    random_start = result.metrics[:20, 1]
    assert proposed.max() <= 0.6 < random_start.max()
    assert np.mean(proposed <= 0.5) > np.mean(random_start <= 0.5)


def test_large_space_pool_samples_and_walks_the_front() -> None:
    """A pool smaller than the space: uniform sample plus one-option neighbours of the front."""
    problem = analytic_problem()
    searcher = SurrogateSearcher(problem, seed=0, n_initial=10, pool_size=30, kind="ridge")
    result = run_search(searcher, evaluator(), ResultStore(), budget=40)
    assert len(set(_keys(result))) == 40
    baseline = SurrogateSearcher(problem, seed=0, n_initial=40, kind="ridge")
    random_only = run_search(baseline, evaluator(), ResultStore(), budget=40)
    assert result.hypervolume > random_only.hypervolume


def _local_proposals(local_share: float, seed: int) -> int:
    """How many configs of the first guided ask are one option from a measured front config."""
    problem = analytic_problem()
    space = problem.space
    searcher = SurrogateSearcher(
        problem, seed=seed, n_initial=12, batch_size=5, kind="ridge", local_share=local_share
    )
    start = searcher.ask()
    F = problem.objective_matrix([evaluate(c) for c in start])
    searcher.tell(start, F)
    front = space.encode_many([start[i] for i in non_dominated(F)])
    proposed = space.encode_many(searcher.ask())
    distance = (proposed[:, None, :] != front[None, :, :]).sum(axis=2).min(axis=1)
    return int((distance <= 1).sum())


def test_local_share_picks_next_to_the_measured_front() -> None:
    """With local_share=1 the whole batch is one option from the front; without, less of it."""
    local = [_local_proposals(1.0, seed) for seed in range(4)]
    anywhere = [_local_proposals(0.0, seed) for seed in range(4)]
    assert local == [5, 5, 5, 5]
    assert sum(anywhere) < sum(local)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"kind": "xgb"}, "kind"),
        ({"n_initial": 1}, "n_initial"),
        ({"batch_size": 0}, "batch_size"),
        ({"pool_size": 0}, "pool_size"),
        ({"n_preselect": 0}, "n_preselect"),
        ({"local_share": 1.5}, "local_share"),
        ({"path_features": ["top5"]}, "path_features"),
        ({"path_features": "quality"}, "path_features"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        SurrogateSearcher(analytic_problem(), **options)  # type: ignore[arg-type]
    if needle == "kind":
        assert "gbr" in str(info.value) and "ridge" in str(info.value)


def test_path_features_go_to_the_objectives_named() -> None:
    import search_spaces
    from nas.search import SearchProblem

    cell = search_spaces.get("nas_bench_201")
    problem = SearchProblem.from_strings(cell, ["err:min", "lat:min"])
    assert SurrogateSearcher(problem, path_features=())._paths == (False, False)
    assert SurrogateSearcher(problem, path_features=["lat"])._paths == (False, True)
    accuracy_first = SearchProblem.from_strings(cell, ["latency_ms@cpu:min", "top1:max"])
    chosen = SurrogateSearcher(accuracy_first, path_features=["latency_ms@cpu"])
    assert chosen._paths == (True, False)


def test_path_features_default_to_the_accuracy_objective_of_cell_spaces() -> None:
    """``"auto"``: the accuracy (or error) objective of a cell space, nothing elsewhere."""
    import search_spaces
    from nas.search import SearchProblem

    cell = search_spaces.get("nas_bench_201")
    for keys, expected in (
        (["err:min", "lat:min"], (True, False)),
        (["latency_ms@cpu:min", "top1:max", "params_m:min"], (False, True, False)),
        (["lat:min", "params_m:min"], (False, False)),
    ):
        problem = SearchProblem.from_strings(cell, keys)
        assert SurrogateSearcher(problem)._paths == expected, keys
    mobile = SearchProblem.from_strings(
        search_spaces.get("mobilenet_like"), ["top1:max", "latency_ms@cpu:min"]
    )
    assert SurrogateSearcher(mobile)._paths == (False, False)
    assert SurrogateSearcher(analytic_problem())._paths == (False, False)
    with pytest.raises(ConfigError, match="needs a cell space") as info:
        SurrogateSearcher(analytic_problem(), path_features=["quality"])
    assert "search space" in str(info.value)


def _cell_run(**options: object) -> list[str]:
    """Keys asked on NAS-Bench-201 cells with analytic objectives (convolution depth vs cost)."""
    import search_spaces
    from nas.search import MetricEvaluator, SearchProblem
    from predictors.features import cell_edges, cell_path_lengths, path_option_sets

    space = search_spaces.get("nas_bench_201")
    edges, sets = cell_edges(space), path_option_sets(space)
    conv = sets.index([2, 3])

    def metrics(config):  # type: ignore[no-untyped-def]
        x = space.encode_many([config])
        depth = cell_path_lengths(x, edges, [0] * 6, sets)[0, 1 + conv]  # type: ignore[arg-type]
        return {
            "err": 0.5 / (1.0 + depth),
            "lat": 1.0 + float((x == 3).sum() + 0.3 * (x == 2).sum()),
        }

    problem = SearchProblem.from_strings(space, ["err:min", "lat:min"])
    searcher = SurrogateSearcher(problem, seed=0, n_initial=10, **options)  # type: ignore[arg-type]
    result = run_search(
        searcher, MetricEvaluator(metrics, ("err", "lat")), ResultStore(), budget=30
    )
    return [c.key for c in result.configs]


def test_path_features_change_only_the_local_picks() -> None:
    plain = _cell_run(local_share=0.0, path_features=())
    assert _cell_run(local_share=0.0, path_features=["err"]) == plain
    with_paths = _cell_run(path_features=["err"])
    assert with_paths != _cell_run(path_features=())
    assert _cell_run() == with_paths  # "auto" names the error objective
