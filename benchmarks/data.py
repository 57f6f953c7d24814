"""Loaders for the reference tables in ``../shared/data`` (benchmarks only; tests use slices)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nas.subnet import SubnetConfig
from search_spaces.nas_bench_201 import config_from_arch_str

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NB201_DEVICES: tuple[str, ...] = (
    "gold_6226",
    "titan_rtx_1",
    "raspi4",
    "pixel3",
    "fpga",
    "eyeriss",
)
NB201_TRUE_HV: dict[str, float] = {
    "gold_6226": 0.82255,
    "titan_rtx_1": 0.74831,
    "raspi4": 0.93365,
    "pixel3": 0.93156,
    "fpga": 0.82797,
    "eyeriss": 0.80346,
}


def load_nb201(path: Path | None = None) -> tuple[pd.DataFrame, list[SubnetConfig]]:
    """The NAS-Bench-201 table (15,625 rows) and the matching configs, in index order."""
    frame = pd.read_csv(path or SHARED_DATA / "nb201" / "nb201_acc_latency.csv")
    configs = [config_from_arch_str(s) for s in frame["arch_str"]]
    return frame, configs


def load_ofa_mbv3(path: Path | None = None) -> tuple[pd.DataFrame, list[SubnetConfig]]:
    """OFA MobileNetV3 w1.0 subnets with top-1, as configs of ``mobilenet_like(bits=(32,))``."""
    frame = pd.read_csv(path or SHARED_DATA / "ofa_mbv3" / "dynast_ofa_mbv3_w10.csv")
    configs = []
    for ks, e, d in zip(frame["ks"], frame["e"], frame["d"], strict=True):
        ks_l, e_l, d_l = json.loads(ks), json.loads(e), json.loads(d)
        items: list[tuple[str, int | float | str]] = []
        for i in range(5):
            items += [(f"s{i}.depth", d_l[i]), (f"s{i}.width", _OFA_WIDTHS[i])]
            for j in range(4):
                items += [
                    (f"s{i}.b{j}.kernel", ks_l[4 * i + j]),
                    (f"s{i}.b{j}.expand", float(e_l[4 * i + j])),
                    (f"s{i}.b{j}.bits", 32),
                ]
        configs.append(SubnetConfig(tuple(items)))
    return frame, configs


_OFA_WIDTHS = (24, 40, 80, 112, 160)
