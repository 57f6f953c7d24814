"""Features of encoded configs: shapes, one-hot, scaled ordinal, skipped blocks zeroed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import search_spaces
from nas.errors import ConfigError
from predictors.features import (
    ENCODINGS,
    OP_COUNT_WEIGHT,
    cell_disconnected,
    cell_edges,
    cell_path_lengths,
    compile_features,
    feature_schema,
    make_features,
    path_option_sets,
    prune_cell,
    supports_cell_paths,
)
from tests.conftest import build_space


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", search_spaces.names())
def test_features_are_finite_with_the_declared_width(name: str, encoding: str) -> None:
    space = build_space(name)
    configs = [*space.sample_many(50, np.random.default_rng(0)), space.smallest(), space.largest()]
    X = space.encode_many(configs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F = make_features(space, encoding=encoding).fit_transform(X)  # type: ignore[arg-type]
    assert F.shape == (len(configs), feature_schema(space, encoding)["n_features"])  # type: ignore[arg-type]
    assert np.isfinite(F).all()
    if cell_edges(space) is not None:  # the last columns but one are operation counts
        counts = F[:, -9:-1]
        assert np.array_equal(counts / OP_COUNT_WEIGHT, np.round(counts / OP_COUNT_WEIGHT))
        F = np.hstack([F[:, :-9], F[:, -1:]])
    assert F.min() >= 0.0 and F.max() <= 1.0


def test_unordered_dimensions_are_one_hot() -> None:
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(space.sample_many(20, np.random.default_rng(1)))
    F = make_features(space, cell_pruning=False).fit_transform(X)
    blocks = F.reshape(len(X), 6, 5)
    assert (blocks.sum(axis=2) == 1).all()
    assert (blocks.argmax(axis=2) == X).all()


def _cell(ops: list[str]):  # type: ignore[no-untyped-def]
    from nas.subnet import SubnetConfig
    from search_spaces.nas_bench_201 import EDGES

    return SubnetConfig(tuple((f"edge{e}", op) for e, op in zip(EDGES, ops, strict=True)))


def test_cell_features_mark_dead_edges_and_disconnected_cells() -> None:
    space = search_spaces.get("nas_bench_201")
    assert cell_edges(space) == [[1, 0], [2, 0], [2, 1], [3, 0], [3, 1], [3, 2]]
    assert cell_edges(search_spaces.get("tiny_cnn")) is None
    # edges: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    dead_end = _cell(["nor_conv_3x3", "none", "none", "skip_connect", "none", "none"])
    disconnected = _cell(["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "none", "none", "none"])
    X = space.encode_many([dead_end, disconnected])
    none = [space.dims[0].options.index("none")] * 6
    edges = cell_edges(space)
    pruned = prune_cell(X, edges, none)  # type: ignore[arg-type]
    names = space.dims[0].options
    # node 1 never reaches the output: its conv is dead; only the 3<-0 skip survives
    assert [names[i] for i in pruned[0]] == ["none"] * 3 + ["skip_connect", "none", "none"]
    assert [names[i] for i in pruned[1]] == ["none"] * 6
    assert cell_disconnected(X, edges, none).ravel().tolist() == [0.0, 1.0]  # type: ignore[arg-type]
    # live (not dead-code) edges: the same here, since no edge of the second cell reaches node 3
    live = prune_cell(X, edges, none, keep="live")  # type: ignore[arg-type]
    assert [names[i] for i in live[0]] == ["none"] * 3 + ["skip_connect", "none", "none"]
    assert [names[i] for i in live[1]] == ["none"] * 6
    F = make_features(space).fit_transform(X)
    assert F.shape == (2, 69) and F[:, -1].tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="cell_pruning=True needs a cell space"):
        make_features(search_spaces.get("tiny_cnn"), cell_pruning=True)


def test_live_edges_keep_ops_on_disconnected_inputs_and_counts_add_up() -> None:
    from sklearn.base import clone

    space = search_spaces.get("nas_bench_201")
    edges, none = cell_edges(space), [0] * 6
    names = space.dims[0].options
    # node 2 has no input (2<-0, 2<-1 are none), yet its conv to the output still runs on zeros
    orphan = _cell(["avg_pool_3x3", "none", "none", "none", "none", "nor_conv_3x3"])
    full = _cell(["nor_conv_3x3"] * 3 + ["nor_conv_1x1"] * 3)
    X = space.encode_many([orphan, full])
    live = prune_cell(X, edges, none, keep="live")  # type: ignore[arg-type]
    assert [names[i] for i in live[0]] == ["none"] * 5 + ["nor_conv_3x3"]
    assert np.array_equal(live[1], X[1])
    assert [names[i] for i in prune_cell(X, edges, none)[0]] == ["none"] * 6  # type: ignore[arg-type]
    counts = prune_cell(X, edges, none, "live", count_options=5, weight=2.0)  # type: ignore[arg-type]
    # columns: raw skip, 1x1, 3x3, pool, then the same for live edges
    assert counts.tolist() == [[0, 0, 2, 2, 0, 0, 2, 0], [0, 6, 6, 0, 0, 6, 6, 0]]
    features = make_features(space)
    F = features.fit_transform(X)
    assert F[:, -1].tolist() == [1.0, 0.0]  # disconnected flag
    assert np.array_equal(F[:, -9:-1], prune_cell(X, edges, none, "live", 5, OP_COUNT_WEIGHT))  # type: ignore[arg-type]
    assert np.array_equal(clone(features).fit_transform(X), F)
    assert "columns__counts__kw_args" in features.get_params()


def test_cell_path_lengths_count_paths_and_the_deepest_one() -> None:
    space = search_spaces.get("nas_bench_201")
    edges, none = cell_edges(space), [0] * 6
    names = space.dims[0].options
    sets = path_option_sets(space)
    assert len(sets) == 15 and [names[i] for i in sets[-1]] == list(names[1:])
    conv = sets.index([names.index("nor_conv_1x1"), names.index("nor_conv_3x3")])
    # edges: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    full = _cell(["nor_conv_3x3"] * 6)
    # 0 -skip-> 1 -conv-> 2 -conv-> 3 and 0 -pool-> 3; 2<-0 and 3<-1 are none
    chain = _cell(["skip_connect", "none", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3"])
    # node 1 is a dead end: its conv never reaches the output, so it is on no path
    dead_end = _cell(["nor_conv_3x3", "none", "none", "skip_connect", "none", "none"])
    disconnected = _cell(["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "none", "none", "none"])
    X = space.encode_many([full, chain, dead_end, disconnected])
    P = cell_path_lengths(X, edges, none, sets)  # type: ignore[arg-type]
    assert P[:, 0].tolist() == [4.0, 2.0, 1.0, 0.0]  # input->output paths
    assert P[:, 1 + len(sets) - 1].tolist() == [3.0, 3.0, 1.0, 0.0]  # longest path, any op
    assert P[:, 1 + conv].tolist() == [3.0, 2.0, 0.0, 0.0]  # convolutions on one path
    F = make_features(space, cell_paths=True).fit_transform(X)
    assert F.shape == (4, feature_schema(space, cell_paths=True)["n_features"]) == (4, 85)
    assert np.array_equal(F[:, -16:], P)
    assert supports_cell_paths(space) and not supports_cell_paths(search_spaces.get("tiny_cnn"))
    with pytest.raises(ConfigError, match="cell_paths=True needs a cell space"):
        make_features(search_spaces.get("tiny_cnn"), cell_paths=True)


def test_ridge_grid_on_cell_spaces_reaches_strong_penalties() -> None:
    from predictors.models import search_predictor

    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(space.sample_many(30, np.random.default_rng(3)))
    y = (X == 3).sum(axis=1) + 0.1 * (X == 2).sum(axis=1)
    search = search_predictor(space, X, y.astype(float), kind="ridge")
    assert 100.0 in search.param_grid["regressor__alpha"]  # type: ignore[index]
    with pytest.raises(ConfigError, match="cell_pruning=True needs a cell space"):
        make_features(search_spaces.get("tiny_cnn"), cell_pruning=True)


def test_ordered_dimensions_are_scaled_option_values(tiny_space) -> None:  # type: ignore[no-untyped-def]
    largest = tiny_space.largest()
    F = make_features(tiny_space).fit_transform(tiny_space.encode_many([largest]))
    assert np.allclose(F, 1.0)  # every option at its maximum scales to 1
    smallest = tiny_space.smallest()
    F0 = make_features(tiny_space).fit_transform(tiny_space.encode_many([smallest]))
    kernel = tiny_space.names.index("s0.b0.kernel")
    assert F0[0, kernel] == pytest.approx(3 / 5)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_skipped_blocks_have_zero_features_whatever_their_values(tiny_space, encoding) -> None:  # type: ignore[no-untyped-def]
    shallow = tiny_space.smallest()  # depth 1 everywhere: block s0.b1 is skipped
    changed = shallow.replace(**{"s0.b1.kernel": 5, "s0.b1.expand": 3, "s0.b1.bits": 32})
    features = make_features(tiny_space, encoding=encoding)
    F = features.fit_transform(tiny_space.encode_many([shallow, changed]))
    assert np.array_equal(F[0], F[1])
    deep = shallow.replace(**{"s0.depth": 2})
    deep_changed = changed.replace(**{"s0.depth": 2})
    G = features.transform(tiny_space.encode_many([deep, deep_changed]))
    assert not np.array_equal(G[0], G[1])  # active again: the block's values matter


def test_unknown_encoding_names_the_allowed_values(tiny_space) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        ConfigError, match=r"encoding='binary' is not one of \['ordinal', 'onehot'\]"
    ):
        make_features(tiny_space, encoding="binary")  # type: ignore[arg-type]


@pytest.mark.parametrize("pruning", [None, False])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", search_spaces.names())
def test_compiled_features_equal_the_stock_transform(name: str, encoding: str, pruning) -> None:  # type: ignore[no-untyped-def]
    from predictors.models import make_predictor
    from predictors.predictor import Predictor

    space = build_space(name)
    X = space.encode_many(space.sample_many(80, np.random.default_rng(2)))
    y = X.sum(axis=1).astype(float)
    pipe = make_predictor(space, kind="ensemble", encoding=encoding, cell_pruning=pruning)  # type: ignore[arg-type]
    pipe.fit(X[:60], y[:60])
    fn = compile_features(pipe.steps[0][1])
    assert fn is not None
    for rows in (X[60:], X[60:61]):
        stock = pipe.steps[0][1].transform(rows)
        fast = fn(rows)
        assert fast.dtype == stock.dtype and np.array_equal(fast, stock)
        assert fast.flags.c_contiguous == stock.flags.c_contiguous
        assert fast.flags.f_contiguous == stock.flags.f_contiguous
    predictor = Predictor(space, pipe, metric="m")
    assert predictor._fast is not None  # type: ignore[attr-defined]
    close = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(predictor.predict_encoded(X[60:]), pipe.predict(X[60:]), **close)
    mean, std = predictor.predict_encoded(X[60:], return_std=True)
    want_mean, want_std = pipe.predict(X[60:], return_std=True)
    np.testing.assert_allclose(mean, want_mean, **close)
    np.testing.assert_allclose(std, want_std, **close)


def test_compiled_features_refuse_unknown_steps_and_values() -> None:
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    assert compile_features(StandardScaler().fit(np.zeros((2, 1)))) is None
    enc = OneHotEncoder(categories=[[0, 1]], sparse_output=False).fit(np.array([[0], [1]]))
    fn = compile_features(enc)
    assert fn is not None
    with pytest.raises(ValueError, match="outside"):
        fn(np.array([[2]]))
