"""What a run prints: one line per stage for noisy latencies, progress bars with an ETA.

A stage that measures hundreds of latencies on a busy machine would otherwise print hundreds of
warnings; :func:`tally_noisy_latency` gathers them into one line that says how many, how bad,
and what to do. Other warnings pass through unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from nas.progress import progress_bar


@dataclass
class NoiseTally:
    """Noisy latency measurements seen inside one :func:`tally_noisy_latency` block."""

    cvs: list[float] = field(default_factory=list)
    limit: float = 0.1

    def line(self, stage: str) -> str | None:
        """The stage's one noise line, or ``None`` when nothing was noisy."""
        if not self.cvs:
            return None
        finite = [c for c in self.cvs if math.isfinite(c)]
        worst = f"worst CV {max(finite):.2f}" if finite else "CV unknown"
        return (
            f"[{stage}] {len(self.cvs)} latency measurement(s) exceeded CV {self.limit:.2f} "
            f"({worst}); other load shared the CPU: rerun on an idle machine or raise "
            "measure.latency_repeats (the median is kept, the records carry latency_cv)"
        )


@contextmanager
def tally_noisy_latency() -> Iterator[NoiseTally]:
    """Collect :class:`~nas.measure.latency.NoisyMeasurementWarning` s; re-issue the rest."""
    from nas.measure.latency import NoisyMeasurementWarning

    tally = NoiseTally()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoisyMeasurementWarning)
        yield tally
    for w in caught:
        if isinstance(w.message, NoisyMeasurementWarning):
            tally.cvs.append(float(getattr(w.message, "cv", math.nan)))
            tally.limit = float(getattr(w.message, "limit", tally.limit))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def aligned(header: list[str], body: list[list[str]]) -> list[str]:
    """Rows of text cells as left-aligned columns two spaces apart (no trailing blanks).

    >>> aligned(["a", "bb"], [["123", "4"]])
    ['a    bb', '123  4']
    """
    widths = [max(len(x) for x in column) for column in zip(header, *body, strict=True)]
    return [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]


def front_summary(rows: list[dict[str, str]]) -> list[str]:
    r"""The exported front as ``nas run`` prints it: narrow, rounded, ``–`` where nothing is known.

    Accuracy carries its 95 % interval; ``top1_test@<target>`` is shown only where it differs
    from ``top1_test`` (a float runtime gives the same number); latency is headed ``ms@<target>``;
    the predictions the search used sit in one ``predicted top1 / ms`` column. Every other value
    is in ``export/front.csv``.

    >>> row = {"subnet": "s0", "top1.measured": "87.325", "top1_val.ci95_low": "86.26",
    ...        "top1_val.ci95_high": "88.32", "latency_ms@cpu.measured": "16.1377",
    ...        "top1.predicted": "87.34", "latency_ms@cpu.predicted": "nan"}
    >>> print("\n".join(front_summary([row])))
    subnet  top1 (val)         ms@cpu  predicted top1 / ms
    s0      87.33 [86.3–88.3]  16.14   87.34 / –
    """
    columns = list(rows[0])
    measured = [c.removesuffix(".measured") for c in columns if c.endswith(".measured")]
    accuracy = [m for m in measured if m.startswith("top1")]
    accuracy = [
        m
        for m in accuracy
        if "@" not in m
        or any(r.get(f"{m}.measured") != r.get(f"{m.split('@')[0]}.measured") for r in rows)
    ]
    costs = [m for m in ("macs_m", "model_size_bytes") if m in measured]
    latency = [m for m in measured if m.startswith("latency_ms@")]
    predicted = [c for c in columns if c.endswith(".predicted")]
    header = ["subnet"] + [_accuracy_heading(m) for m in accuracy]
    header += ["macs_m" if m == "macs_m" else "size_kB" for m in costs]
    header += ["ms@" + m.split("@", 1)[1] for m in latency]
    if predicted:
        header.append("predicted " + " / ".join(_predicted_heading(c) for c in predicted))
    body = []
    for row in rows:
        cells = [row.get("subnet", "–")]
        cells += [_accuracy_cell(row, m) for m in accuracy]
        cells += [_rounded(row.get(f"{m}.measured"), m) for m in costs]
        cells += [_rounded(row.get(f"{m}.measured"), m) for m in latency]
        if predicted:
            cells.append(" / ".join(_rounded(row.get(c), c) for c in predicted))
        body.append(cells)
    return aligned(header, body)


def _accuracy_heading(metric: str) -> str:
    return "top1 (val)" if metric == "top1" else metric


def _predicted_heading(column: str) -> str:
    name = column.removesuffix(".predicted")
    return "ms" if name.startswith("latency_ms") else name.split("@")[0]


def _accuracy_cell(row: dict[str, str], metric: str) -> str:
    value = _rounded(row.get(f"{metric}.measured"), metric)
    split = {"top1": "top1_val", "top1_test": "top1_test"}.get(metric)
    low, high = (_float(row.get(f"{split}.ci95_{end}")) for end in ("low", "high"))
    if split is None or low is None or high is None or value == "–":
        return value
    return f"{value} [{low:.1f}–{high:.1f}]"


def _float(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _rounded(value: str | None, column: str) -> str:
    """Accuracy to 0.01 pp, size in kB to 0.1, MACs and latency to 4 significant digits."""
    number = _float(value)
    if number is None:
        return "–"
    if column.startswith("top1"):
        return f"{number:.2f}"
    if column.startswith("model_size_bytes"):
        return f"{number / 1000:.1f}"
    return f"{number:.4g}"


__all__ = ["NoiseTally", "aligned", "front_summary", "progress_bar", "tally_noisy_latency"]
