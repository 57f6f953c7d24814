"""Latency lookup table on this CPU: per-layer LUT prediction vs whole-model measurement.

Run: ``python -m benchmarks.lut`` (from the repository root; a few minutes on 2 cores).

Builds the LUT of ``mobilenet_like`` at ``--resolution`` for ``--target`` from the covering
configs (every block shape, measured in isolation), fits the affine correction on ``--calib``
whole-model measurements, then compares predictions with measurements on ``--n`` held-out
random configs. Baseline in the same run: a MACs-proportional predictor
(``latency ≈ a·MACs + b``) fitted on the same calibration configs.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import search_spaces
from nas.measure.cost import compute_cost
from nas.measure.latency import LatencyProtocol, NoisyMeasurementWarning, measure_latency
from nas.measure.lut import PredictionReport, build_latency_table
from nas.measure.targets import default_registry
from nas.supernets.base import Supernet


def _row(name: str, report: PredictionReport) -> str:
    return (
        f"| {name} | {report.n} | {report.spearman:.3f} | {report.kendall_tau:.3f} | "
        f"{100 * report.mape:.1f} % | {100 * report.within_10pct:.0f} % |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="ort_fp32")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--n", type=int, default=50, help="held-out configs")
    parser.add_argument("--calib", type=int, default=8, help="configs for the affine fit")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the LUT as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore", NoisyMeasurementWarning)

    torch.manual_seed(args.seed)
    r = args.resolution
    space = search_spaces.get("mobilenet_like", resolution=r, num_classes=1000)
    net = Supernet(space).eval()
    target = default_registry().get(args.target)
    protocol = LatencyProtocol(warmup=args.warmup, repeats=args.repeats)
    print(
        f"# LUT on {target.name} ({target.runtime}, {target.precision}, {target.threads} "
        f"thread), mobilenet_like @ {r}x{r}, warmup {args.warmup}, repeats {args.repeats}"
    )

    t0 = time.perf_counter()
    table = build_latency_table(net, target, protocol=protocol, seed=args.seed)
    build_s = time.perf_counter() - t0
    print(f"LUT: {len(table.entries)} layer shapes measured in {build_s:.0f} s")

    rng = np.random.default_rng(args.seed + 1)
    configs = space.sample_many(args.calib + args.n, rng)
    shape = target.input_shape(3, r)
    t0 = time.perf_counter()
    measured = np.array(
        [
            measure_latency(net.export(c).eval(), shape, target, protocol=protocol).median_ms
            for c in configs
        ]
    )
    print(f"whole-model measurements: {len(configs)} in {time.perf_counter() - t0:.0f} s")
    calib, held = configs[: args.calib], configs[args.calib :]
    y_calib, y_held = measured[: args.calib], measured[args.calib :]

    calibrated = table.calibrated(space, calib, y_calib)
    macs = np.array([compute_cost(space, c, resolution=r).macs for c in configs], float)
    a, b = np.polyfit(macs[: args.calib], y_calib, deg=1)

    raw = PredictionReport.compare([table.predict_raw(space, c) for c in held], y_held)
    cal = PredictionReport.compare(calibrated.predict_many(space, held), y_held)
    base = PredictionReport.compare(a * macs[args.calib :] + b, y_held)
    print(
        f"\naffine correction: scale {calibrated.scale:.3f}, offset "
        f"{calibrated.offset_ms:.3f} ms (fitted on {args.calib} configs, not in the "
        "held-out set)"
    )
    print("| predictor | n | Spearman | Kendall τ | MAPE | within ±10 % |")
    print("|---|---|---|---|---|---|")
    print(_row("LUT sum (raw)", raw))
    print(_row("LUT sum + affine correction", cal))
    print(_row("baseline a·MACs + b", base))
    ratio = cal.within_10pct / base.within_10pct if base.within_10pct else float("inf")
    print(f"within ±10 %: LUT / MACs baseline = {ratio:.2f}")
    if args.save:
        print(f"saved {calibrated.save(args.save)}")


if __name__ == "__main__":
    main()
