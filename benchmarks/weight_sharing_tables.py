"""The weight-sharing tables of ``benchmarks/README.md``, generated from a committed result file.

``python -m benchmarks.weight_sharing_tables benchmarks/results/weight_sharing.json`` prints the
block that sits between the README's ``<!-- BEGIN weight_sharing -->`` markers;
``tests/test_benchmark_tables.py`` checks that the two agree, so no number there is typed by
hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _met(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def markdown(result: dict[str, Any]) -> str:
    """Part 1 (supernet vs standalone), part 2 (front vs family) and the goal lines."""
    goals = result["goals"]
    low, high = result["gap_ci95"]
    lines = [
        f"Source: `benchmarks/results/weight_sharing.json` (`{result['command']}`, commit "
        f"{result['commit'][:7]}, {result['date'][:10]}, {result['machine']['cpus']} CPUs). "
        f"Split: {result['split']}.",
        "",
        f"**1. Supernet subnets vs standalone** (test top-1 %, {result['n_subnets']} subnets):",
        "",
        "| subnet | origin | MACs (M) | supernet | standalone | gap pp | latency ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["subnets"]:
        lines.append(
            f"| {row['subnet']} | {row['origin']} | {row['MACs (M)']:.2f} | "
            f"{row['supernet top-1 %']:.2f} | {row['standalone top-1 %']:.2f} | "
            f"{row['gap pp']:+.2f} | {row['latency ms']:.2f} |"
        )
    lines += [
        "",
        "| | measured | goal |",
        "|---|---|---|",
        f"| mean gap (supernet − standalone), {result['n_subnets']} subnets | "
        f"**{result['mean_gap_pp']:+.2f} pp**, 95 % t interval [{low:+.2f}, {high:+.2f}] | "
        f"≥ −0.5 pp: {_met(goals['mean_gap_ge_-0.5pp'])}; interval's upper end above 0: "
        f"{_met(goals['gap_ci95_upper_above_0'])} |",
        f"| Kendall τ, supernet vs standalone ranking | **{result['kendall_tau']:.3f}** | "
        f"≥ 0.8: {_met(goals['kendall_tau_ge_0.8'])} |",
    ]
    family = result.get("family_rows", [])
    if family:
        lines += [
            "",
            "**2. Hand-scaled family vs the exported front** (test error %, latency on "
            "`cpu_fp32_b64` in one interleaved session):",
            "",
            "| set | member | architecture | MACs (M) | test error % | latency ms | train CPU-s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in family:
            cpu = row.get("train CPU-s")
            lines.append(
                f"| {row['set']} | {row['member']} | {row['architecture']} | "
                f"{row['MACs (M)']:.2f} | {100 - row['test_top1']:.2f} | "
                f"{row['latency_ms']:.2f} | {'' if cpu is None else f'{cpu:.0f}'} |"
            )
    nadir = result.get("nadir_reference_point")
    nadir_text = f" ({nadir[0]:.4f}, {nadir[1]:.4f})" if nadir else ""
    ratio = result["hv_family_nadir_ref"] / result["hv_front_nadir_ref"]
    lines += [
        "",
        "| | front (one supernet) | family | goal |",
        "|---|---|---|---|",
        f"| hypervolume, reference ({result['reference_point'][0]}, "
        f"{result['reference_point'][1]}) | {result['hv_front']:.4f} | {result['hv_family']:.4f} "
        f"| higher: {_met(goals['higher_hv'])} |",
        f"| hypervolume, union nadir + 10 %{nadir_text} | {result['hv_front_nadir_ref']:.4f} | "
        f"{result['hv_family_nadir_ref']:.4f} | higher with both references: "
        f"{_met(goals['higher_hv_both_references'])} (family/front {ratio:.2f}×) |",
        f"| training CPU-s | {result['cpu_s_supernet']:.0f} (one epoch re-timed × epochs: "
        f"{result['cpu_s_supernet_remeasured']:.0f}) | {result['cpu_s_family']:.0f} | lower: "
        f"{_met(goals['lower_cost'])} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
