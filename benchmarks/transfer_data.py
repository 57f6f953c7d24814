"""Device banks from ``../shared/data/latency_transfer`` (HELP's latency tables), read on demand.

Nothing here runs at import; :func:`load_bank` reads a table when a benchmark or a test asks and
:func:`missing_reason` says why it cannot (for ``pytest.skip``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import search_spaces
from benchmarks.data import SHARED_DATA
from nas.subnet import SubnetConfig
from predictors.transfer.device_bank import DeviceBank
from search_spaces.fbnet import config_from_op_idx
from search_spaces.nas_bench_201 import config_from_arch_str
from search_spaces.ofa_mbv3_table import config_from_row

LATENCY_TRANSFER = SHARED_DATA / "latency_transfer"
TABLES: dict[str, str] = {
    "nas_bench_201": "nb201_latency.csv",
    "fbnet": "fbnet_latency.csv",
    "ofa_mbv3_table": "ofa_latency.csv",
}
"""Space name → table file."""


def _nb201(frame: pd.DataFrame) -> list[SubnetConfig]:
    return [config_from_arch_str(s) for s in frame["arch_str"]]


def _fbnet(frame: pd.DataFrame) -> list[SubnetConfig]:
    return [config_from_op_idx(json.loads(s)) for s in frame["op_idx"]]


def _ofa(frame: pd.DataFrame) -> list[SubnetConfig]:
    return [
        config_from_row(json.loads(ks), json.loads(e), json.loads(d), int(r))
        for ks, e, d, r in zip(frame["ks"], frame["e"], frame["d"], frame["r"], strict=True)
    ]


PARSERS: dict[str, Callable[[pd.DataFrame], list[SubnetConfig]]] = {
    "nas_bench_201": _nb201,
    "fbnet": _fbnet,
    "ofa_mbv3_table": _ofa,
}


def table_path(space_name: str, root: Path | None = None) -> Path:
    return (root or LATENCY_TRANSFER) / TABLES[space_name]


def missing_reason(space_name: str, root: Path | None = None) -> str | None:
    """Why the table of ``space_name`` cannot be read, or ``None`` when it can."""
    path = table_path(space_name, root)
    return None if path.is_file() else f"latency table {path} is not present"


def load_bank(space_name: str, root: Path | None = None) -> DeviceBank:
    """Every device of the space's table; repeats of one canonical architecture averaged."""
    frame = pd.read_csv(table_path(space_name, root))
    space = search_spaces.get(space_name)
    configs = PARSERS[space_name](frame)
    devices = [c for c in frame.columns if c.startswith("lat_")]
    X = space.canonical_indices(space.encode_many(configs))
    _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    values = frame[devices].to_numpy(dtype=float)
    sums = np.zeros((len(first), len(devices)))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(first))[:, None]
    order = np.argsort(first)  # keep the table's order of first appearance
    return DeviceBank(
        space,
        X[first[order]],
        tuple(d.removeprefix("lat_") for d in devices),
        (sums / counts)[order],
    )
