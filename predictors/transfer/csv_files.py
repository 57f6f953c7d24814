"""Bank and measurement CSV files of ``nas transfer``, read with one clear error per bad cell.

A *bank* has a ``config`` column (a JSON object per architecture) and one ``lat_<device>`` column
per device (milliseconds); *measurements* have ``config`` and ``latency_ms``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from nas.errors import ConfigError

LATENCY_PREFIX = "lat_"


def _rows(path: str | os.PathLike[str], *, required: tuple[str, ...]) -> list[dict[str, str]]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file} is not a file")
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in required:
            if column not in columns:
                raise ConfigError(f"{file}: column {column!r} is missing (columns: {columns})")
        return list(reader)


def _config(text: str, *, file: Path, line: int) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} line {line}: config is not JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{file} line {line}: config must be a JSON object")
    return value


def _float(text: str, *, file: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{file} line {line}: {column}={text!r} is not a number") from exc


def read_bank_csv(path: str | os.PathLike[str], space: Any) -> Any:
    """:class:`~predictors.transfer.device_bank.DeviceBank` from a bank CSV (module doc)."""
    from predictors.transfer.device_bank import DeviceBank

    file = Path(path)
    rows = _rows(file, required=("config",))
    devices = [c for c in (rows[0] if rows else {}) if c.startswith(LATENCY_PREFIX)]
    if not devices:
        raise ConfigError(f"{file}: no {LATENCY_PREFIX}<device> column")
    configs = [_config(r["config"], file=file, line=i + 2) for i, r in enumerate(rows)]
    latency = {
        d.removeprefix(LATENCY_PREFIX): [
            _float(r[d], file=file, line=i + 2, column=d) for i, r in enumerate(rows)
        ]
        for d in devices
    }
    return DeviceBank.from_configs(space, configs, latency)


def read_measurements_csv(path: str | os.PathLike[str]) -> list[tuple[dict[str, Any], float]]:
    """``(config, latency_ms)`` pairs from a measurements CSV (module doc)."""
    file = Path(path)
    rows = _rows(file, required=("config", "latency_ms"))
    return [
        (
            _config(r["config"], file=file, line=i + 2),
            _float(r["latency_ms"], file=file, line=i + 2, column="latency_ms"),
        )
        for i, r in enumerate(rows)
    ]
