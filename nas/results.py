"""Evaluation records and the append-only ResultStore (JSONL ↔ pandas).

The store is the source of truth for resume: every finished evaluation is appended and flushed
with ``fsync`` before it counts, so a killed run loses nothing that was reported as done. A torn
last line (the writer died mid-write) is detected on load, skipped with a warning, and
truncated away before the next append.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nas.errors import ConfigError, StorageError
from nas.subnet import SubnetConfig

if TYPE_CHECKING:
    import pandas as pd

Source = Literal["measured", "predicted"]
SOURCES: tuple[str, ...] = ("measured", "predicted")


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one config on one hardware target, measured or predicted."""

    config: SubnetConfig
    target: str
    metrics: Mapping[str, float]
    source: Source = "measured"
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"source={self.source!r} is not one of {list(SOURCES)}")

    @property
    def key(self) -> tuple[str, str, str]:
        """Deduplication key: (config key, target, source)."""
        return (self.config.key, self.target, self.source)

    def to_record(self) -> dict[str, object]:
        return {
            "config_key": self.config.key,
            "config": self.config.to_dict(),
            "target": self.target,
            "source": self.source,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Evaluation:
        config = SubnetConfig.from_dict(record["config"])  # type: ignore[arg-type]
        metrics = {str(k): float(v) for k, v in dict(record["metrics"]).items()}  # type: ignore[call-overload]
        return cls(
            config=config,
            target=str(record["target"]),
            metrics=metrics,
            source=str(record.get("source", "measured")),  # type: ignore[arg-type]
            timestamp=float(record.get("timestamp", 0.0)),  # type: ignore[arg-type]
        )


class ResultStore:
    """Append-only JSONL of :class:`Evaluation` records, deduplicated by (config, target, source).

    A later record for the same key replaces the earlier one in :meth:`get` and :meth:`to_frame`
    (last write wins), while the file keeps the full history.

    Example:
        >>> import tempfile, pathlib
        >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "results.jsonl")
        >>> cfg = SubnetConfig.from_dict({"k": 3})
        >>> store.append(Evaluation(cfg, "cpu_fp32", {"latency_ms": 1.5}))
        >>> store.get(cfg, "cpu_fp32").metrics["latency_ms"]
        1.5
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._records: dict[tuple[str, str, str], Evaluation] = {}
        self._valid_bytes = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        self._valid_bytes = self._merge(self.path.read_bytes())

    def _merge(self, data: bytes, *, warn: bool = True) -> int:
        """Add the complete records of ``data`` (the file's bytes); return where they end.

        A torn last line (no newline, or not JSON) is skipped with a warning: it was being
        written when its writer stopped. Anything else malformed is an error naming the line.
        """
        offset = 0
        for lineno, raw in enumerate(data.splitlines(keepends=True), start=1):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no trailing newline")
                evaluation = Evaluation.from_record(json.loads(raw))
            # RecursionError: JSON nested too deep; OverflowError: an integer beyond float.
            except (
                ValueError,
                KeyError,
                TypeError,
                ConfigError,
                RecursionError,
                OverflowError,
            ) as exc:
                if offset + len(raw) == len(data):
                    if not warn:
                        break
                    warnings.warn(
                        f"{self.path}: skipping a torn last record ({exc}); "
                        "it was being written when the writer stopped",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    break
                raise ConfigError(f"{self.path}:{lineno} is not a valid record: {exc}") from exc
            self._records[evaluation.key] = evaluation
            offset += len(raw)
        return offset

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Evaluation]:
        return iter(self._records.values())

    def get(
        self, config: SubnetConfig, target: str, source: Source = "measured"
    ) -> Evaluation | None:
        """The latest evaluation of ``config`` on ``target`` from ``source``, if any."""
        return self._records.get((config.key, target, source))

    def __contains__(self, item: tuple[SubnetConfig, str]) -> bool:
        config, target = item
        return self.get(config, target) is not None

    def evaluations(
        self, *, target: str | None = None, source: Source | None = None
    ) -> list[Evaluation]:
        """Deduplicated evaluations, optionally filtered, in insertion order."""
        return [
            e
            for e in self._records.values()
            if (target is None or e.target == target) and (source is None or e.source == source)
        ]

    def to_frame(self) -> pd.DataFrame:
        """One row per deduplicated evaluation: keys, target, source, config, metrics."""
        import pandas as pd

        rows = []
        for e in self._records.values():
            row: dict[str, object] = {
                "config_key": e.config.key,
                "target": e.target,
                "source": e.source,
                "timestamp": e.timestamp,
            }
            row.update({f"cfg.{k}": v for k, v in e.config.items})
            row.update(e.metrics)
            rows.append(row)
        return pd.DataFrame(rows)

    # -- writing -------------------------------------------------------------------------------
    def append(self, evaluation: Evaluation) -> None:
        """Record one evaluation; durable (fsync) before returning when the store has a path."""
        self.extend([evaluation])

    def extend(self, evaluations: Iterable[Evaluation]) -> None:
        """Record several evaluations with one flush.

        The file is locked while appending; records another process appended since this store
        last read are merged first, and only a torn tail is cut away. A failed write (a full
        disk, a file size limit) is undone to the last complete record and raised as one
        :class:`~nas.errors.StorageError` line: the store stays loadable and resumable.
        """
        batch = list(evaluations)
        if self.path is not None and batch:
            payload = b"".join(
                (json.dumps(e.to_record(), separators=(",", ":")) + "\n").encode() for e in batch
            )
            self._append_bytes(payload)
        for e in batch:
            self._records[e.key] = e

    def _append_bytes(self, payload: bytes) -> None:
        assert self.path is not None
        with open(self.path, "a+b", buffering=0) as fh:  # unbuffered: a failure is seen here
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                size = os.fstat(fh.fileno()).st_size
                if size != self._valid_bytes:  # another writer appended, or a torn tail
                    self._records.clear()
                    fh.seek(0)
                    self._valid_bytes = self._merge(fh.read(), warn=False)
                try:
                    fh.truncate(self._valid_bytes)
                    view = memoryview(payload)
                    while view:  # "a" mode: lands at the end; a short write continues
                        view = view[fh.write(view) :]
                    os.fsync(fh.fileno())
                except OSError as exc:
                    fh.truncate(self._valid_bytes)
                    raise StorageError(
                        f"could not append to {self.path}: {exc.strerror or exc}; the "
                        f"{len(self._records)} records before are intact (free space or raise "
                        "the limit, then rerun to resume)"
                    ) from exc
                self._valid_bytes += len(payload)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
