"""Warn when a metric varies with something the search space does not encode.

A predictor sees only the encoding. If identical encodings were measured with widely different
values (an input resolution, batch size or dataset left out of the space, or a device that
changed between runs), no predictor can learn that part of the metric, and the fit looks poor
for no visible reason (OFA subnets of 25 resolutions in a space without resolution rank at
Spearman 0.25-0.29). :func:`check_duplicates` catches it from the training table itself.

Criterion: rows are grouped by canonical encoding; over the groups with two or more rows, the
pooled within-group variance (sum of squared deviations from each group's mean, divided by
rows minus groups) is compared with the variance of the metric over all rows. Strictly positive
metrics (latencies) are compared on a log scale, so a slow and a fast architecture weigh alike.
A warning is emitted when at least :data:`MIN_GROUPS` groups exist and the ratio exceeds
:data:`MAX_WITHIN_SHARE`: repeated measurements of one architecture normally differ by a few
percent of the spread between architectures, not by a tenth of it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from nas.space import SearchSpace

MAX_WITHIN_SHARE = 0.1
"""Largest tolerated share of the metric's variance found within duplicate encodings."""
MIN_GROUPS = 2
"""Fewest duplicate groups that the check judges on (one pair proves little)."""


class UnencodedFactorWarning(UserWarning):
    """A metric differs widely between measurements of identically encoded configs."""


@dataclass(frozen=True)
class DuplicateSpread:
    """How much of a metric's variance lies within groups of identical encodings."""

    groups: int
    rows: int
    within_share: float
    log_scale: bool

    @property
    def suspicious(self) -> bool:
        """At least :data:`MIN_GROUPS` groups and a share above :data:`MAX_WITHIN_SHARE`."""
        return self.groups >= MIN_GROUPS and self.within_share > MAX_WITHIN_SHARE


def duplicate_spread(space: SearchSpace, X: np.ndarray, y: np.ndarray) -> DuplicateSpread:
    """The within-duplicate share of ``y``'s variance over rows of ``X`` (module doc)."""
    values = np.asarray(y, dtype=float).ravel()
    finite = np.isfinite(values)
    log_scale = bool(finite.any() and (values[finite] > 0).all())
    if log_scale:
        values = np.where(finite, np.log(np.where(finite, values, 1.0)), np.nan)
    X = np.asarray(X)[finite]
    values = values[finite]
    if len(values) < 2:
        return DuplicateSpread(0, 0, 0.0, log_scale)
    canonical = np.ascontiguousarray(space.canonical_indices(X), dtype=np.float64)
    index: dict[bytes, int] = {}
    inverse = np.array([index.setdefault(row.tobytes(), len(index)) for row in canonical])
    counts = np.bincount(inverse)
    repeated = counts[inverse] >= 2
    groups = int((counts >= 2).sum())
    total = float(values.var(ddof=1))
    if groups == 0 or total <= 0:
        return DuplicateSpread(groups, int(repeated.sum()), 0.0, log_scale)
    means = np.bincount(inverse, weights=values) / counts
    squares = float(((values - means[inverse])[repeated] ** 2).sum())
    rows = int(repeated.sum())
    within = squares / (rows - groups)
    return DuplicateSpread(groups, rows, within / total, log_scale)


def check_duplicates(
    space: SearchSpace, X: np.ndarray, y: np.ndarray, *, metric: str, stacklevel: int = 3
) -> DuplicateSpread:
    """Warn (:class:`UnencodedFactorWarning`, one line naming ``metric``) if suspicious."""
    spread = duplicate_spread(space, X, y)
    if spread.suspicious:
        scale = "log " if spread.log_scale else ""
        warnings.warn(
            f"{metric}: {spread.groups} groups of identically encoded configs ({spread.rows} "
            f"rows) hold {spread.within_share:.0%} of the {scale}metric's variance (more than "
            f"{MAX_WITHIN_SHARE:.0%}): it varies with something search space {space.name!r} "
            "does not encode (an input resolution, batch size or dataset left out, or a "
            "changed device); add that dimension to the space or separate the measurements",
            UnencodedFactorWarning,
            stacklevel=stacklevel,
        )
    return spread
