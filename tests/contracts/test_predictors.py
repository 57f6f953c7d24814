"""Conformance of every predictor kind with the scikit-learn estimator contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

import search_spaces
from predictors.models import MeanStdEnsemble, kinds, make_predictor


@parametrize_with_checks(
    [
        MeanStdEnsemble([("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))]),
        MeanStdEnsemble(
            [("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))], weights=[1, 3]
        ),
    ]
)
def test_custom_estimator_meets_the_sklearn_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def _data(n: int = 60) -> tuple[object, np.ndarray, np.ndarray]:
    space = search_spaces.get("tiny_cnn")
    configs = [space.canonical(c) for c in space.sample_many(n, np.random.default_rng(0))]
    X = space.encode_many(configs)  # skipped blocks at index 0: y depends on active dims only
    y = X.sum(axis=1).astype(float) + 0.5 * X[:, 0]
    return space, X, y


@pytest.mark.parametrize("kind", kinds())
def test_every_kind_clones_and_round_trips_params(kind: str) -> None:
    space, X, y = _data()
    pipe = make_predictor(space, kind=kind, random_state=3)  # type: ignore[arg-type]
    params = pipe.get_params(deep=False)
    cloned = clone(pipe)
    assert cloned is not pipe
    assert set(cloned.get_params(deep=True)) == set(pipe.get_params(deep=True))
    assert cloned.set_params(**params) is cloned
    # same random_state ⇒ same fitted predictions; the clone is unfitted and independent
    a = pipe.fit(X, y).predict(X)
    b = clone(pipe).fit(X, y).predict(X)
    np.testing.assert_allclose(a, b)
    assert a.shape == (len(X),)


@pytest.mark.parametrize("kind", kinds())
def test_every_kind_learns_an_additive_target(kind: str) -> None:
    space, X, y = _data(200)
    pipe = make_predictor(space, kind=kind).fit(X[:150], y[:150])  # type: ignore[arg-type]
    pred = pipe.predict(X[150:])
    corr = np.corrcoef(pred, y[150:])[0, 1]
    assert corr > 0.8, f"{kind}: correlation {corr:.3f}"
