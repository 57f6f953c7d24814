"""QualityReport: how well a predictor ranks and estimates held-out configs.

Rank metrics (Kendall τ, Spearman) matter most to a search, which only compares configs; error
metrics (MAPE, RMSE, share within ±10 %) matter to a user reading a single prediction. The report
is printed as a table, stored as JSON next to the model and plotted as predicted vs measured.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from nas.errors import ConfigError


def _finite_or_nan(value: float) -> float:
    return float(value) if np.isfinite(value) else math.nan


def _json_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _tau_interval(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of Kendall τ (scipy, 999 paired resamples, seeded)."""
    from scipy.stats import bootstrap, kendalltau

    if len(true) < 4:
        return (math.nan, math.nan)

    def tau(a: np.ndarray, b: np.ndarray) -> float:
        value = kendalltau(a, b).statistic
        return float(value) if np.isfinite(value) else 0.0

    result = bootstrap(
        (true, pred),
        tau,
        paired=True,
        vectorized=False,
        n_resamples=999,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(0),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


@dataclass(frozen=True)
class QualityReport:
    """Held-out quality of one predictor.

    Args:
        kendall_tau: Kendall τ-b between predicted and measured values.
        spearman: Spearman rank correlation.
        mape: Mean absolute percentage error as a fraction (0.05 = 5 %), over the MAPE subset.
        rmse: Root mean squared error in the metric's unit.
        within_10pct: Share of the MAPE subset whose prediction is within ±10 % of the truth.
        n_train: Number of training samples.
        n_test: Number of held-out samples.
        n_mape_excluded: Held-out samples left out of MAPE and ``within_10pct`` (e.g. near-zero
            truths where a percentage is meaningless); rank metrics use all samples.
        metric: Name of the predicted metric, e.g. ``"latency_ms@cpu_fp32"``.
        kendall_tau_ci95: 95 % percentile-bootstrap interval of τ over the held-out pairs
            (999 paired resamples, seeded): how far τ may be from its value at this ``n_test``.
        within_10pct_trivial: The held-out values span less than ±10 % of their mean, so even a
            constant prediction lands within ±10 %; ``within_10pct`` is then not reported.
    """

    kendall_tau: float
    spearman: float
    mape: float
    rmse: float
    within_10pct: float
    n_train: int
    n_test: int
    n_mape_excluded: int = 0
    metric: str = ""
    kendall_tau_ci95: tuple[float, float] = (math.nan, math.nan)
    within_10pct_trivial: bool = False

    @property
    def tau_includes_chance(self) -> bool:
        """The τ interval includes 0: the ranking is not shown to beat chance."""
        low, high = self.kendall_tau_ci95
        return math.isnan(low) or low <= 0.0 <= high

    def chance_warning(self) -> str | None:
        """One line saying the ranking is noise, or ``None`` when its interval excludes 0."""
        if not self.tau_includes_chance:
            return None
        low, high = self.kendall_tau_ci95
        return (
            f"warning: predictor {self.metric or '?'} ranks no better than chance on "
            f"{self.n_test} held-out subnets (Kendall tau {self.kendall_tau:.2f}, 95 % interval "
            f"[{low:.2f}, {high:.2f}] includes 0); measure more subnets (measure.n_samples) or "
            "use a task whose subnets differ more"
        )

    @classmethod
    def from_predictions(  # noqa: D417
        cls,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        *,
        n_train: int,
        metric: str = "",
        mape_mask: ArrayLike | None = None,
    ) -> QualityReport:
        """Compute every metric from held-out truths and predictions.

        Args:
            mape_mask: Boolean mask of samples used for MAPE and ``within_10pct`` (default all).

        Example:
            >>> r = QualityReport.from_predictions([1.0, 2.0, 3.0], [1.05, 2.0, 2.9], n_train=10)
            >>> r.kendall_tau, round(r.mape, 4), r.within_10pct
            (1.0, 0.0278, 1.0)
        """
        from scipy.stats import kendalltau, spearmanr
        from sklearn.metrics import mean_absolute_percentage_error, root_mean_squared_error

        true = np.asarray(y_true, dtype=float).ravel()
        pred = np.asarray(y_pred, dtype=float).ravel()
        if true.shape != pred.shape:
            raise ConfigError(f"y_true has shape {true.shape} but y_pred has shape {pred.shape}")
        if len(true) < 2:
            raise ConfigError(
                f"a quality report needs at least 2 held-out samples, got {len(true)}"
            )
        mask = (
            np.ones(len(true), dtype=bool)
            if mape_mask is None
            else np.asarray(mape_mask, dtype=bool).ravel()
        )
        if mask.shape != true.shape:
            raise ConfigError(f"mape_mask has shape {mask.shape}, expected {true.shape}")
        if mask.any():
            mape = float(mean_absolute_percentage_error(true[mask], pred[mask]))
            rel = np.abs(pred[mask] - true[mask]) <= 0.1 * np.abs(true[mask])
            within = float(rel.mean())
        else:
            mape, within = math.nan, math.nan
        constant = np.ptp(true) == 0 or np.ptp(pred) == 0  # rank correlations undefined
        trivial = bool(np.ptp(true) < 0.2 * np.abs(true).mean())
        if trivial:
            within = math.nan
        return cls(
            kendall_tau=math.nan if constant else _finite_or_nan(kendalltau(true, pred).statistic),
            kendall_tau_ci95=(math.nan, math.nan) if constant else _tau_interval(true, pred),
            within_10pct_trivial=trivial,
            spearman=math.nan if constant else _finite_or_nan(spearmanr(true, pred).statistic),
            mape=mape,
            rmse=float(root_mean_squared_error(true, pred)),
            within_10pct=within,
            n_train=int(n_train),
            n_test=len(true),
            n_mape_excluded=int((~mask).sum()),
            metric=metric,
        )

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; NaN becomes ``None``."""
        return {k: _json_value(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> QualityReport:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"quality report key {unknown[0]!r} is not one of {allowed}")
        values = {k: (math.nan if v is None else v) for k, v in data.items()}
        if "kendall_tau_ci95" in values:
            values["kendall_tau_ci95"] = tuple(
                math.nan if v is None else float(v)
                for v in values["kendall_tau_ci95"]  # type: ignore[attr-defined]
            )
        return cls(**values)  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QualityReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # -- display ----------------------------------------------------------------------------------
    def to_table(self) -> str:
        """The report as a one-row table."""
        return format_table([self])


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("metric", "metric", "{}"),
    ("n_train", "n_train", "{:d}"),
    ("n_test", "n_test", "{:d}"),
    ("kendall_tau", "kendall_tau", "{:.4f}"),
    ("kendall_tau_ci95", "tau_95%_interval", "[{:.2f}, {:.2f}]"),
    ("spearman", "spearman", "{:.4f}"),
    ("mape", "MAPE_%", "{:.2f}"),
    ("rmse", "RMSE", "{:.4g}"),
    ("within_10pct", "within_10%", "{:.3f}"),
)


def format_table(reports: Sequence[QualityReport], *, labels: Sequence[str] | None = None) -> str:
    """Reports as an aligned text table (MAPE in percent)."""
    header = (["label"] if labels is not None else []) + [title for _, title, _ in _COLUMNS]
    rows = []
    for i, report in enumerate(reports):
        row = [labels[i]] if labels is not None else []
        for key, _, fmt in _COLUMNS:
            value = getattr(report, key)
            if key == "mape":
                value = value * 100
            if key == "within_10pct" and report.within_10pct_trivial:
                row.append("n/a (range < ±10 %)")
            elif isinstance(value, tuple):
                row.append("n/a" if any(math.isnan(v) for v in value) else fmt.format(*value))
            elif isinstance(value, float) and math.isnan(value):
                row.append("nan")
            else:
                row.append(fmt.format(value))
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def write_json_atomic(path: str | os.PathLike[str], data: object) -> Path:
    """Write ``data`` as indented JSON through a temporary file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def plot_predictions(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | os.PathLike[str],
    *,
    report: QualityReport | None = None,
    title: str = "",
) -> Path:
    """Scatter of predicted vs measured values with the identity line, saved as PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true = np.asarray(y_true, dtype=float).ravel()
    pred = np.asarray(y_pred, dtype=float).ravel()
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter(true, pred, s=6, alpha=0.5)
    lo = float(min(true.min(), pred.min()))
    hi = float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
    label = title or (report.metric if report is not None else "")
    if report is not None:
        label += f"\nτ={report.kendall_tau:.3f}  ρ={report.spearman:.3f}  MAPE={report.mape:.1%}"
    ax.set_title(label, fontsize=9)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
