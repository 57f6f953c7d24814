"""User feature hooks: every predictor kind accepts one; bad hooks are refused naming the hook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import search_spaces
from nas.errors import ConfigError
from nas.subnet import SubnetConfig
from predictors import user_features
from predictors.models import kinds, make_predictor
from predictors.persistence import load_predictor, save_predictor
from predictors.predictor import Predictor
from search_spaces.fbnet import OPERATIONS

EXPAND = {op: float(op.split("_e")[1].split("_")[0]) if "_e" in op else 0.0 for op in OPERATIONS}


def expand_per_layer(config: SubnetConfig) -> np.ndarray:
    """Per-layer expand ratio (0 for skip): a stand-in for per-layer analytic MACs."""
    return np.array([EXPAND[str(v)] for _, v in config.items])


@pytest.fixture
def hooks() -> Iterator[None]:
    """Test hooks, registered for the test and removed afterwards."""
    user_features.register("test_expand", expand_per_layer, n_features=4, spaces=("fbnet",))
    user_features.register("test_wrong_shape", lambda c: np.zeros(3), n_features=2)
    user_features.register("test_nan", lambda c: np.full(1, np.nan), n_features=1)
    yield
    for name in ("test_expand", "test_wrong_shape", "test_nan"):
        user_features.REGISTRY.pop(name, None)


def _data(n: int) -> tuple[object, np.ndarray, np.ndarray]:
    space = search_spaces.get("fbnet", layers=4)
    configs = space.sample_many(n, np.random.default_rng(0))
    X = space.encode_many(configs)
    y = np.array([(expand_per_layer(c) ** 2).sum() for c in configs])  # smooth in the hook
    return space, X, y


@pytest.mark.usefixtures("hooks")
@pytest.mark.parametrize("kind", kinds())
def test_every_kind_accepts_a_hook_and_it_helps(kind: str) -> None:
    space, X, y = _data(120)
    plain = make_predictor(space, kind=kind).fit(X[:30], y[:30])
    hooked = make_predictor(space, kind=kind, user_features="test_expand").fit(X[:30], y[:30])
    rho_plain = spearmanr(plain.predict(X[30:]), y[30:]).statistic
    rho_hooked = spearmanr(hooked.predict(X[30:]), y[30:]).statistic
    assert rho_hooked > 0.8 and rho_hooked > rho_plain, (rho_plain, rho_hooked)


@pytest.mark.usefixtures("hooks")
def test_wrong_shape_and_non_finite_values_name_the_hook() -> None:
    space, X, y = _data(20)
    with pytest.raises(ConfigError, match=r"hook 'test_wrong_shape' returned shape \(3,\)"):
        make_predictor(space, kind="ridge", user_features="test_wrong_shape").fit(X, y)
    with pytest.raises(ConfigError, match="hook 'test_nan' returned non-finite values"):
        make_predictor(space, kind="ridge", user_features="test_nan").fit(X, y)


@pytest.mark.usefixtures("hooks")
def test_unknown_hooks_and_hooks_of_other_spaces_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"user_features='nope' is not one of \[.*'test_expand'"):
        make_predictor(search_spaces.get("fbnet"), user_features="nope")
    with pytest.raises(
        ConfigError, match=r"is for search spaces \['fbnet'\], not 'nas_bench_201'"
    ):
        make_predictor(search_spaces.get("nas_bench_201"), user_features="test_expand")
    with pytest.raises(ConfigError, match="already registered"):
        user_features.register("test_expand", expand_per_layer, n_features=4)
    with pytest.raises(ConfigError, match="n_features=0 must be >= 1"):
        user_features.register("x", expand_per_layer, n_features=0)


@pytest.mark.usefixtures("hooks")
def test_a_hooked_predictor_saves_by_hook_name_and_loads(tmp_path: Path) -> None:
    space, X, y = _data(60)
    pipe = make_predictor(space, kind="gbr", user_features="test_expand").fit(X, y)
    predictor = Predictor(space, pipe, metric="lat")
    save_predictor(predictor, tmp_path / "p")
    loaded = load_predictor(tmp_path / "p")
    np.testing.assert_allclose(loaded.predict_encoded(X), predictor.predict_encoded(X))
    user_features.REGISTRY.pop("test_expand")
    with pytest.raises(ConfigError, match="user_features='test_expand' is not one of"):
        loaded.predict_encoded(X)


def test_ofa_block_macs_hook_gives_an_additive_macs_model() -> None:
    space = search_spaces.get("ofa_mbv3_table")
    configs = [space.canonical(c) for c in space.sample_many(80, np.random.default_rng(0))]
    X = space.encode_many(configs)
    from search_spaces.ofa_mbv3_table import block_macs

    y = np.array([block_macs(c).sum() for c in configs])
    model = make_predictor(space, kind="ridge", user_features="ofa_block_macs")
    model.fit(X[:40], y[:40])
    assert spearmanr(model.predict(X[40:]), y[40:]).statistic > 0.99
