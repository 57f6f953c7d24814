"""What a run prints: one line per stage for noisy latencies, progress bars with an ETA.

A stage that measures hundreds of latencies on a busy machine would otherwise print hundreds of
warnings; :func:`tally_noisy_latency` gathers them into one line that says how many, how bad,
and what to do. Other warnings pass through unchanged.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


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


def progress_bar(total: int, description: str) -> Any:
    """A tqdm bar with an ETA on stderr (plain text when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="subnet",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 15.0,
        disable=total == 0,
    )


__all__ = ["NoiseTally", "progress_bar", "tally_noisy_latency"]
