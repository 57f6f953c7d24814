"""Thin wrappers over pymoo's non-dominated sorting and hypervolume (minimisation throughout).

Nothing here sorts or measures volume itself: :func:`non_dominated` is pymoo's
``NonDominatedSorting`` and :func:`hypervolume` is pymoo's ``HV``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nas.errors import ConfigError


def _as_matrix(F: ArrayLike) -> np.ndarray:
    arr = np.asarray(F, dtype=float)
    if arr.ndim != 2:
        raise ConfigError(f"objective matrix has shape {arr.shape}, expected (n_points, n_obj)")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("objective matrix contains NaN or infinite values")
    return arr


def non_dominated(F: ArrayLike) -> np.ndarray:
    """Indices (ascending) of the points no other point dominates.

    Equal points do not dominate each other, so duplicates of a front point are all kept.

    Example:
        >>> non_dominated([[0, 1], [1, 0], [1, 1]]).tolist()
        [0, 1]
    """
    arr = _as_matrix(F)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    front = NonDominatedSorting().do(arr, only_non_dominated_front=True)
    return np.sort(np.asarray(front, dtype=np.int64))


def non_dominated_mask(F: ArrayLike) -> np.ndarray:
    """Boolean mask of :func:`non_dominated`."""
    arr = _as_matrix(F)
    mask = np.zeros(len(arr), dtype=bool)
    mask[non_dominated(arr)] = True
    return mask


def nondomination_ranks(F: ArrayLike) -> np.ndarray:
    """Rank of each point in pymoo's non-dominated sorting (0 = the front, 1 = the next, ...).

    Example:
        >>> nondomination_ranks([[0, 1], [1, 0], [1, 1]]).tolist()
        [0, 0, 1]
    """
    arr = _as_matrix(F)
    ranks = np.zeros(len(arr), dtype=np.int64)
    for rank, members in enumerate(NonDominatedSorting().do(arr) if len(arr) else []):
        ranks[np.asarray(members, dtype=np.int64)] = rank
    return ranks


def hypervolume(F: ArrayLike, reference_point: ArrayLike) -> float:
    """Volume dominated by ``F`` and bounded by ``reference_point`` (pymoo ``HV``).

    Points that do not strictly dominate the reference point add nothing. An empty ``F`` has
    volume 0.

    Example:
        >>> hypervolume([[0.0, 1.0], [1.0, 0.0]], [2.0, 2.0])
        3.0
    """
    ref = np.asarray(reference_point, dtype=float)
    arr = np.asarray(F, dtype=float)
    if arr.size == 0:
        return 0.0
    arr = _as_matrix(arr)
    if ref.shape != (arr.shape[1],):
        raise ConfigError(
            f"reference_point has shape {ref.shape}, expected ({arr.shape[1]},) "
            f"for {arr.shape[1]} objectives"
        )
    inside = np.all(arr < ref, axis=1)
    if not inside.any():
        return 0.0
    pts = arr[inside]
    return float(HV(ref_point=ref)(pts[non_dominated(pts)]))


def reference_point_from(F: ArrayLike, *, margin: float = 0.1) -> np.ndarray:
    """Nadir of ``F`` pushed out by ``margin`` times the range (or 1 where the range is 0)."""
    arr = _as_matrix(F)
    if len(arr) == 0:
        raise ConfigError("cannot derive a reference point from zero points")
    if margin < 0:
        raise ConfigError(f"margin={margin!r} must be >= 0")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return hi + margin * span
