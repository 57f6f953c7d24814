"""Progress that reads well in a terminal and in a log file.

A tqdm bar redraws one line with carriage returns; written to a file or a pipe (a cluster job's
log, ``nas run … > run.log``) those redraws pile up into one line of many kilobytes. On a
terminal :func:`progress_bar` is a tqdm bar; elsewhere it is a :class:`LineProgress` that prints
one complete line every ``interval`` seconds and one at the end.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from typing import IO, Any

LOG_INTERVAL_S = 15.0


class LineProgress:
    """Plain-line progress: ``desc: n/total (pct) elapsed, ETA``, at most once per interval.

    >>> import io
    >>> out = io.StringIO()
    >>> bar = LineProgress(total=4, desc="accuracy", unit="subnet", file=out, interval=3600)
    >>> bar.update(1); bar.update(3); bar.close()
    >>> lines = out.getvalue().splitlines()
    >>> len(lines), lines[-1].startswith("accuracy: 4/4 subnet (100%)")
    (1, True)
    """

    def __init__(
        self,
        *,
        total: int,
        desc: str,
        unit: str = "it",
        file: IO[str] | None = None,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.postfix = ""
        self._file = file if file is not None else sys.stderr
        self._interval = interval
        self._clock = clock
        self._start = self._last = clock()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished items; print a line when the interval has passed."""
        self.n += n
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._print(now)

    def set_postfix(self, **values: Any) -> None:
        """Extra ``key=value`` fields at the end of the next line (as tqdm's ``set_postfix``)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Print the final line once."""
        if not self._closed:
            self._closed = True
            self._print(self._clock())

    def line(self, now: float) -> str:
        """The text of one progress line at time ``now``."""
        elapsed = now - self._start
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {self.n}/{self.total} {self.unit}{share} {clock_text(elapsed)}"
        if 0 < self.n < self.total:
            text += f", ETA {clock_text(elapsed / self.n * (self.total - self.n))}"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _print(self, now: float) -> None:
        print(self.line(now), file=self._file, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clock_text(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) as tqdm prints it.

    >>> clock_text(75.4), clock_text(3725)
    ('1:15', '1:02:05')
    """
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_bar(
    total: int, description: str, *, unit: str = "subnet", file: IO[str] | None = None
) -> Any:
    """A tqdm bar with an ETA on a terminal, :class:`LineProgress` lines elsewhere.

    Nothing is printed for ``total == 0``.
    """
    stream = file if file is not None else sys.stderr
    if total == 0:
        return LineProgress(total=0, desc=description, unit=unit, file=io.StringIO())
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return LineProgress(total=total, desc=description, unit=unit, file=stream)
    from tqdm import tqdm

    return tqdm(
        total=total, desc=description, unit=unit, file=stream, dynamic_ncols=True, mininterval=1.0
    )


__all__ = ["LOG_INTERVAL_S", "LineProgress", "clock_text", "progress_bar"]
