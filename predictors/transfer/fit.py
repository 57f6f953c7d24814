"""The estimator behind :func:`predictors.transfer.few_shot.fit_transfer`, on plain matrices.

The target's log-latency ``t`` is fitted as ``intercept + Z w + F β``: ``Z`` holds the bank
devices' log-latencies of the measured architectures, ``F`` their layer-wise one-hot features.

- ``w >= 0`` with penalty ``alpha·s_Z·||w||²``: the new device is a non-negative mix of known
  ones, so weights cannot cancel and a lucky draw cannot flip a ranking;
- ``β`` with penalty ``lam·s_F·||β||²`` (or left out): what no bank device explains, per layer
  and operation. It is eliminated in closed form (``min_β ||r - Fβ||² + λ||β||² =
  rᵀ λ (FFᵀ + λI)⁻¹ r``), so the fit stays one small non-negative least-squares problem.

``s_Z`` and ``s_F`` are ``n`` times the mean column variance, so the penalties do not depend on
sample size or scale. Model selection uses leave-one-out squared error (10 folds above
:data:`LOO_MAX_SAMPLES`): ``alpha`` is the best of :data:`ALPHAS` without features (ties: the
larger); then among "no features" and :data:`LAMBDAS` (most regularised first) the first whose
error is within one standard error of the best wins, the usual guard against picking a complex
model on noise at 5–20 samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

ALPHAS: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)
"""Candidate penalties on the bank weights."""
LAMBDAS: tuple[float, ...] = (1000.0, 100.0, 10.0, 1.0)
"""Candidate penalties on the per-feature correction, most regularised first."""
LOO_MAX_SAMPLES = 100
"""Above this many samples, 10-fold instead of leave-one-out."""


@dataclass(frozen=True)
class Combination:
    """A fitted ``intercept + Z w + F β`` (``beta`` is ``None`` without the features)."""

    intercept: float
    w: np.ndarray
    beta: np.ndarray | None
    alpha: float
    lam: float | None

    def predict(self, Z: np.ndarray, F: np.ndarray | None) -> np.ndarray:
        out = self.intercept + Z @ self.w
        if self.beta is not None and F is not None:
            out = out + F @ self.beta
        return out


def _scale(M: np.ndarray) -> float:
    return len(M) * max(float(np.mean(M.var(axis=0))), 1e-12)


@dataclass(frozen=True)
class Kernel:
    """Centred features and the eigendecomposition of ``F Fᵀ``, shared by every ``lam``."""

    f_mean: np.ndarray
    Fc: np.ndarray
    eigenvalues: np.ndarray
    V: np.ndarray

    @classmethod
    def of(cls, F: np.ndarray) -> Kernel:
        f_mean = F.mean(axis=0)
        Fc = F - f_mean
        eigenvalues, V = np.linalg.eigh(Fc @ Fc.T)
        return cls(f_mean, Fc, np.clip(eigenvalues, 0.0, None), V)


def combine(
    Z: np.ndarray,
    t: np.ndarray,
    alpha: float,
    F: np.ndarray | None = None,
    lam: float | None = None,
    *,
    kernel: Kernel | None = None,
) -> Combination:
    """Fit one candidate (module doc); the intercept is not penalised (data centred).

    ``kernel`` (:meth:`Kernel.of` of ``F``) saves the decomposition when several ``lam`` are
    fitted on the same samples.
    """
    z_mean, t_mean = Z.mean(axis=0), float(t.mean())
    Zc, tc = Z - z_mean, t - t_mean
    use_features = F is not None and lam is not None
    if use_features:
        k = kernel if kernel is not None else Kernel.of(F)  # type: ignore[arg-type]
        penalty = float(lam) * _scale(k.Fc)  # type: ignore[arg-type]
        S = np.sqrt(penalty / (k.eigenvalues + penalty))[:, None] * k.V.T  # SᵀS = λ(FFᵀ+λI)⁻¹
        A, b = S @ Zc, S @ tc
    else:
        A, b = Zc, tc
    if alpha > 0:
        rows = np.sqrt(alpha * _scale(Zc)) * np.eye(Z.shape[1])
        A, b = np.vstack([A, rows]), np.concatenate([b, np.zeros(Z.shape[1])])
    w, _ = nnls(A, b)
    intercept = t_mean - float(z_mean @ w)
    beta = None
    if use_features:
        residual = tc - Zc @ w
        dual = k.V @ ((k.V.T @ residual) / (k.eigenvalues + penalty))
        beta = k.Fc.T @ dual
        intercept -= float(k.f_mean @ beta)
    return Combination(intercept, w, beta, float(alpha), None if lam is None else float(lam))


def held_out_predictions(
    Z: np.ndarray,
    t: np.ndarray,
    alpha: float,
    F: np.ndarray | None = None,
    lams: Sequence[float | None] = (None,),
) -> list[np.ndarray]:
    """Leave-one-out predictions of :func:`combine`, one array per ``lam``.

    Ten folds instead above :data:`LOO_MAX_SAMPLES` samples.
    """
    n = len(t)
    folds = np.arange(n) if n <= LOO_MAX_SAMPLES else np.arange(n) % 10
    out = [np.empty(n) for _ in lams]
    for fold in np.unique(folds):
        test = folds == fold
        F_train = None if F is None else F[~test]
        kernel = Kernel.of(F_train) if F_train is not None and any(lams) else None
        for pred, lam in zip(out, lams, strict=True):
            model = combine(Z[~test], t[~test], alpha, F_train, lam, kernel=kernel)
            pred[test] = model.predict(Z[test], None if F is None else F[test])
    return out


def select(
    Z: np.ndarray,
    t: np.ndarray,
    F: np.ndarray | None = None,
    *,
    alphas: Sequence[float] = ALPHAS,
    lambdas: Sequence[float] = LAMBDAS,
) -> tuple[Combination, np.ndarray]:
    """The selected fit on all samples and its held-out predictions (module doc)."""
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in sorted(alphas, reverse=True):
        (pred,) = held_out_predictions(Z, t, alpha)
        error = float(np.mean((pred - t) ** 2))
        if best is None or error < best[0] * (1 - 1e-9):
            best = (error, alpha, pred)
    assert best is not None  # callers validate a non-empty grid
    alpha = best[1]
    candidates: list[tuple[float | None, np.ndarray]] = [(None, best[2])]
    if F is not None:
        lams = sorted(lambdas, reverse=True)
        candidates += zip(lams, held_out_predictions(Z, t, alpha, F, lams), strict=True)
    squared = [(pred - t) ** 2 for _, pred in candidates]
    means = [float(s.mean()) for s in squared]
    k = int(np.argmin(means))
    # one standard error, plus rounding noise so that exact fits tie
    bound = means[k] + float(squared[k].std()) / np.sqrt(len(t)) + 1e-12 * float(np.var(t))
    lam, pred = next(c for c, m in zip(candidates, means, strict=True) if m <= bound)
    return combine(Z, t, alpha, F if lam is not None else None, lam), pred
