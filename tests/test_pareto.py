"""nas.pareto: pymoo NDS and HV wrappers against definitions and hand-computed volumes."""

from __future__ import annotations

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.pareto import hypervolume, non_dominated, non_dominated_mask, reference_point_from


def _dominated_by_definition(F: np.ndarray) -> np.ndarray:
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    return (le & lt).any(axis=0)  # column j dominated by some row i


@pytest.mark.parametrize("n_obj", [2, 3])
def test_non_dominated_matches_the_definition(n_obj: int) -> None:
    rng = np.random.default_rng(n_obj)
    F = rng.integers(0, 6, size=(200, n_obj)).astype(float)  # many ties and duplicates
    mask = non_dominated_mask(F)
    np.testing.assert_array_equal(mask, ~_dominated_by_definition(F))
    np.testing.assert_array_equal(non_dominated(F), np.flatnonzero(mask))


def test_hypervolume_known_values() -> None:
    assert hypervolume([[1.0, 1.0]], [2.0, 3.0]) == pytest.approx(2.0)
    # two rectangles 2x1 and 1x2 overlapping in 1x1: 3
    assert hypervolume([[0.0, 1.0], [1.0, 0.0]], [2.0, 2.0]) == pytest.approx(3.0)
    # dominated and outside points add nothing
    assert hypervolume([[0.0, 1.0], [1.0, 0.0], [1.5, 1.5], [5.0, 0.0]], [2.0, 2.0]) == 3.0
    assert hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0
    assert hypervolume([[0.5, 0.5, 0.5]], [1.0, 1.0, 1.0]) == pytest.approx(0.125)


def test_reference_point_and_errors() -> None:
    np.testing.assert_allclose(reference_point_from([[0.0, 1.0], [1.0, 1.0]]), [1.1, 1.1])
    with pytest.raises(ConfigError, match="shape"):
        hypervolume([[0.0, 1.0]], [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="NaN"):
        non_dominated([[np.nan, 1.0]])
    with pytest.raises(ConfigError, match="zero points"):
        reference_point_from(np.zeros((0, 2)))
