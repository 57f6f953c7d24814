"""Forward time of the supernet vs the exported static module of the same config.

Run: ``python -m benchmarks.supernet_forward [--spaces vit_fashion,vit_tiny]`` (from the
repository root). Prints one row per (space, config, batch): median milliseconds of each and the
ratio supernet / static (goal ≤ 1.15), and the geometric mean per space.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import search_spaces
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet


def _paired_median_ms(first, second, repeats: int, warmup: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median ms of each, timed alternately so both see the same machine load."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times[0]), statistics.median(times[1])


def _mid(space: SearchSpace) -> SubnetConfig:
    """The middle option of every dimension."""
    return space.decode(space.n_options // 2)


def _with_bits(space: SearchSpace, cfg: SubnetConfig, bits: int) -> SubnetConfig:
    return cfg.replace(**{n: bits for n in space.names if n.endswith(".bits")})


CASES: dict[str, tuple[dict[str, object], tuple[int, ...]]] = {
    "tiny_cnn": ({}, (1, 64)),
    "mobilenet_like": ({"resolution": 128, "num_classes": 10}, (1, 8)),
    "vit_tiny": ({}, (1, 32)),
    "vit_fashion": ({}, (1, 32)),
}
"""Space → (options, batch sizes timed)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spaces", default=",".join(CASES), help="comma-separated spaces")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    chosen = args.spaces.split(",")
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"--spaces: {unknown} not among {sorted(CASES)}")
    for name in chosen:
        options, batches = CASES[name]
        space = search_spaces.get(name, **options)
        net = Supernet(space).eval()
        configs = {
            "largest fp32": _with_bits(space, space.largest(), 32),
            "mid fp32": _with_bits(space, _mid(space), 32),
            "mid 8-bit": _with_bits(space, _mid(space), 8),
            "mid 4-bit": _with_bits(space, _mid(space), 4),
        }
        configs = {k: c for k, c in configs.items() if space.contains(c)}
        for label, cfg in configs.items():
            static = net.export(cfg).eval()
            for batch in batches:
                x = torch.randn(batch, *net.input_shape()[1:])
                with torch.inference_mode():
                    t_super, t_static = _paired_median_ms(
                        lambda: net(x, cfg),  # noqa: B023
                        lambda: static(x),  # noqa: B023
                        args.repeats,
                        5,
                    )
                rows.append((name, label, batch, t_super, t_static, t_super / t_static))
    print(f"threads={args.threads} repeats={args.repeats} (median ms)")
    header = f"{'space':15} {'config':13} {'batch':>5} {'supernet':>9} {'static':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, label, batch, a, b, r in rows:
        print(f"{name:15} {label:13} {batch:5d} {a:9.3f} {b:9.3f} {r:6.2f}")
    for name in chosen:
        ratios = np.array([r[-1] for r in rows if r[0] == name])
        print(f"{name}: geometric mean ratio {float(np.exp(np.log(ratios).mean())):.2f}")
        for batch in CASES[name][1]:
            at = np.array([r[-1] for r in rows if r[0] == name and r[2] == batch])
            print(f"  batch {batch}: geometric mean ratio {float(np.exp(np.log(at).mean())):.2f}")
    ratios = np.array([r[-1] for r in rows])
    print(f"all: geometric mean ratio {float(np.exp(np.log(ratios).mean())):.2f}")


if __name__ == "__main__":
    main()
