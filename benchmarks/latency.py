"""Latency protocol checks on this CPU: repeatability, latency vs MACs, int8 vs fp32.

Run: ``python -m benchmarks.latency`` (from the repository root; about 2-3 minutes on 2 cores).

1. The largest ``mobilenet_like`` subnet, exported once, measured 5 times back to back per
   target: each repeat's median and CV, and the CV of the 5 medians.
2. ``--n`` random configs: Spearman correlation between measured latency and analytic MACs.
3. Largest config, int8 vs fp32 on each runtime: the ratio fp32 / int8 (> 1: int8 is faster).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

import search_spaces
from nas.measure.cost import compute_cost
from nas.measure.latency import LatencyProtocol, NoisyMeasurementWarning, measure_latency
from nas.measure.targets import default_registry
from nas.supernets.base import Supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50, help="random configs for Spearman")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NoisyMeasurementWarning)  # reported in the tables instead

    torch.manual_seed(args.seed)
    r = args.resolution
    space = search_spaces.get("mobilenet_like", resolution=r, num_classes=1000)
    net = Supernet(space).eval()
    registry = default_registry()
    protocol = LatencyProtocol(warmup=args.warmup, repeats=args.repeats)
    shape = (1, 3, r, r)
    print(
        f"# mobilenet_like @ {r}x{r}, batch 1, 1 thread, warmup {args.warmup}, "
        f"repeats {args.repeats}, statistic median, torch {torch.__version__}"
    )

    largest = net.export(space.largest()).eval()
    print("\n## 1. Five back-to-back measurements of the largest subnet")
    print("| target | medians (ms) | per-repeat CV | CV of the 5 medians |")
    print("|---|---|---|---|")
    for name in ("cpu_fp32", "ort_fp32"):
        res = [
            measure_latency(largest, shape, registry.get(name), protocol=protocol)
            for _ in range(5)
        ]
        med = np.array([x.median_ms for x in res])
        print(
            f"| {name} | {', '.join(f'{m:.3f}' for m in med)} | "
            f"{', '.join(f'{x.cv:.3f}' for x in res)} | {med.std() / med.mean():.3f} |"
        )

    print(f"\n## 2. Latency vs MACs over {args.n} random configs (seed {args.seed})")
    rng = np.random.default_rng(args.seed)
    configs = space.sample_many(args.n, rng)
    macs = np.array([compute_cost(space, c).macs for c in configs], dtype=np.float64)
    lat: dict[str, list[float]] = {"cpu_fp32": [], "ort_fp32": []}
    noisy = dict.fromkeys(lat, 0)
    t0 = time.perf_counter()
    for c in configs:
        subnet = net.export(c).eval()
        for name in lat:
            res = measure_latency(subnet, shape, registry.get(name), protocol=protocol)
            lat[name].append(res.median_ms)
            noisy[name] += res.noisy
    print("| target | Spearman(latency, MACs) | latency range (ms) | noisy results |")
    print("|---|---|---|---|")
    for name, values in lat.items():
        rho = spearmanr(values, macs).statistic
        print(
            f"| {name} | {rho:.3f} | {min(values):.2f}–{max(values):.2f} | "
            f"{noisy[name]}/{args.n} |"
        )
    print(
        f"(MACs {macs.min() / 1e6:.0f}–{macs.max() / 1e6:.0f} M; {time.perf_counter() - t0:.0f} s)"
    )

    print("\n## 3. int8 vs fp32, largest config")
    print("| runtime | fp32 median (ms) | int8 median (ms) | fp32 / int8 |")
    print("|---|---|---|---|")
    for fp32, int8 in (("cpu_fp32", "cpu_int8"), ("ort_fp32", "ort_int8")):
        a = measure_latency(largest, shape, registry.get(fp32), protocol=protocol)
        b = measure_latency(largest, shape, registry.get(int8), protocol=protocol)
        runtime = registry.get(fp32).runtime
        print(
            f"| {runtime} | {a.median_ms:.3f} (cv {a.cv:.2f}) | {b.median_ms:.3f} "
            f"(cv {b.cv:.2f}) | {a.median_ms / b.median_ms:.2f} |"
        )


if __name__ == "__main__":
    main()
