"""Conformance suite run for every registered user feature hook."""

from __future__ import annotations

import numpy as np
import pytest

import search_spaces
from predictors import user_features
from predictors.features import make_features
from tests.conftest import build_space

HOOKS = user_features.names()


def _spaces(name: str) -> list[str]:
    return list(user_features.get(name).spaces) or ["tiny_cnn"]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_returns_its_declared_length_of_finite_values(name: str) -> None:
    hook = user_features.get(name)
    for space_name in _spaces(name):
        space = build_space(space_name)
        for config in [
            space.smallest(),
            space.largest(),
            *space.sample_many(20, np.random.default_rng(0)),
        ]:
            values = np.asarray(hook.fn(space.canonical(config)), dtype=float)
            assert values.shape == (hook.n_features,)
            assert np.isfinite(values).all()


@pytest.mark.parametrize("name", HOOKS)
def test_hook_columns_follow_the_space_features(name: str) -> None:
    for space_name in _spaces(name):
        space = search_spaces.get(space_name)
        X = space.encode_many(space.sample_many(10, np.random.default_rng(1)))
        plain = make_features(space).fit_transform(X)
        hooked = make_features(space, user_features=name).fit_transform(X)
        assert hooked.shape == (10, plain.shape[1] + user_features.get(name).n_features)
        np.testing.assert_array_equal(hooked[:, : plain.shape[1]], plain)
