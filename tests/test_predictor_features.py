"""Features of encoded configs: shapes, one-hot, scaled ordinal, skipped blocks zeroed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import search_spaces
from nas.errors import ConfigError
from predictors.features import ENCODINGS, feature_schema, make_features
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
    assert F.min() >= 0.0 and F.max() <= 1.0


def test_unordered_dimensions_are_one_hot() -> None:
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(space.sample_many(20, np.random.default_rng(1)))
    F = make_features(space).fit_transform(X)
    blocks = F.reshape(len(X), 6, 5)
    assert (blocks.sum(axis=2) == 1).all()
    assert (blocks.argmax(axis=2) == X).all()


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
