"""ViT weight sharing: supernet subnets of the front vs the same architecture trained alone.

Run from the repository root on a finished ``nas run experiments/vit_fashion.toml``::

    python -m benchmarks.weight_sharing_vit --run runs/vit_fashion    # --quick: a smoke run

The protocol of part 1 of :mod:`benchmarks.weight_sharing` (the CNN benchmark), on subnets of the
run's **exported front**: ``--subnets`` of them evenly along measured latency (a shorter front is
filled up with the run's measured non-dominated subnets, as there). For each: test top-1 from
the supernet weights (no BatchNorm, so nothing is re-calibrated; the script checks it against the
model cards' ``top1_test``), and test top-1 of the same architecture trained alone from scratch
with the run's ``[train]`` recipe (AdamW, warm-up, gradient clipping, labels only; a fresh
supernet only ever run at that config, so quantization-aware training of 4- and 8-bit blocks is
the same forward). Mean gap with a 95 % t interval over subnets, Kendall τ between the rankings.
Nothing is chosen on the test split: the subnets come from the front, the recipe from the spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.weight_sharing import (
    GOAL_GAP_PP,
    GOAL_TAU,
    TARGET,
    Run,
    evenly,
    front_cards,
    gap_summary,
    load_fashion,
    load_run,
    markdown,
    measured_candidates,
    split_sizes,
    supernet_top1,
    top1,
    train_standalone,
)
from nas.data.datasets import ImageData
from nas.measure.cost import compute_cost
from nas.results import ResultStore
from nas.subnet import SubnetConfig
from nas.training.checkpoint import load_supernet
from nas.training.config import TrainConfig

OUT_DIR = Path("benchmarks/out")
LATENCY = f"latency_ms@{TARGET['name']}"


def choose_front(run: Run, n: int) -> list[tuple[str, SubnetConfig, dict[str, Any]]]:
    """``n`` exported-front configs evenly along latency, then measured fill-ups if needed.

    Returns:
        ``(origin, canonical config, measured metrics)`` ordered by latency.
    """
    space = run.space
    front = sorted(front_cards(run), key=lambda cm: float(cm[1].get(LATENCY, math.inf)))
    chosen = [("front", space.canonical(c), m) for c, m in evenly(front, n)]
    need = n - len(chosen)
    if need > 0:
        keys = {c.key for _, c, _ in chosen}
        candidates = measured_candidates(space, ResultStore(run.root / "measure/results.jsonl"))
        pool = candidates[~candidates["key"].isin(list(keys))].sort_values(["layer", "latency_ms"])
        for r in evenly(list(pool.head(need).itertuples()), need):
            metrics = {"top1": r.val_top1, LATENCY: r.latency_ms}
            chosen.append((f"measured (layer {r.layer})", r.config, metrics))
    return sorted(chosen, key=lambda t: float(t[2].get(LATENCY, math.inf)))


def describe(config: SubnetConfig) -> str:
    """``e96 d4 h4,4,3,2 r3,2,2,1 b32,8,8,4``: embedding, depth, heads, MLP ratios, bits."""
    d = int(config["depth"])
    heads = ",".join(str(config[f"l{j}.heads"]) for j in range(d))
    ratios = ",".join(f"{float(config[f'l{j}.mlp_ratio']):g}" for j in range(d))
    bits = ",".join(str(config[f"l{j}.bits"]) for j in range(d))
    return f"e{config['embed_dim']} d{d} h{heads} r{ratios} b{bits}"


def train_alone(
    run: Run, config: SubnetConfig, data: ImageData, recipe: TrainConfig
) -> dict[str, float]:
    """Test top-1 of ``config`` trained alone with ``recipe`` and its training cost."""
    model, cost = train_standalone(run.space, config, data, recipe)
    x, y = data.tensors("test")
    return {"standalone_top1": top1(model, config, x, y), **cost}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Parsed command line."""

    run: Path
    subnets: int
    epochs: int | None
    threads: int
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/vit_fashion"))
    parser.add_argument("--subnets", type=int, default=None, help="default 8 (quick: 2)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1,000 images, 2 nets")
    a = parser.parse_args(argv)
    return Settings(
        run=a.run,
        subnets=a.subnets if a.subnets is not None else (2 if a.quick else 8),
        epochs=a.epochs if a.epochs is not None else (1 if a.quick else None),
        threads=a.threads,
        quick=a.quick,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train each chosen subnet alone, compare with the supernet, print and save the table."""
    settings = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    run = load_run(settings.run)
    space = run.space
    recipe = dataclasses.replace(run.recipe, epochs=settings.epochs or run.recipe.epochs)
    data = load_fashion(
        int(run.spec["seed"]), split_sizes(run.spec, train=1000 if settings.quick else None)
    )
    print(f"run {run.root}, checkpoint {run.checkpoint}\ndata: {data.split_note}")
    print(
        f"recipe: {recipe.epochs} epochs, batch {recipe.batch_size}, {recipe.optimizer} lr "
        f"{recipe.lr}, warm-up {recipe.warmup_epochs}, clip {recipe.grad_clip}, weight decay "
        f"{recipe.weight_decay}, seed {recipe.seed}; labels only; {settings.threads} threads"
    )
    supernet, _ = load_supernet(run.checkpoint, space=space)
    supernet.eval()
    chosen = choose_front(run, settings.subnets)
    sn = supernet_top1(supernet, [c for _, c, _ in chosen], data, n_calib=run.calib_images)
    card_check = max(
        (abs(s - float(m["top1_test"])) for s, (_, _, m) in zip(sn, chosen, strict=True)
         if "top1_test" in m),
        default=math.nan,
    )  # fmt: skip
    print(f"check: supernet test top-1 vs the model cards' top1_test, max |Δ| {card_check:.3f} pp")
    rows = []
    for i, ((origin, config, metrics), sn_top1) in enumerate(zip(chosen, sn, strict=True)):
        alone = train_alone(run, config, data, recipe)
        print(
            f"  trained {i + 1}/{len(chosen)} {describe(config)}: standalone "
            f"{alone['standalone_top1']:.2f} %, supernet {sn_top1:.2f} %, "
            f"{alone['wall_s']:.0f} s wall",
            flush=True,
        )
        cost = compute_cost(space, config).metrics()
        rows.append(
            {
                "subnet": describe(config),
                "origin": origin,
                "MACs (M)": cost["macs_m"],
                "size (KB)": cost["model_size_bytes"] / 1000.0,
                "latency ms": float(metrics.get(LATENCY, math.nan)),
                "val top-1 % (card)": float(metrics.get("top1", math.nan)),
                "supernet top-1 %": sn_top1,
                "standalone top-1 %": alone["standalone_top1"],
                "gap pp": sn_top1 - alone["standalone_top1"],
                "standalone wall-s": alone["wall_s"],
                "config_key": config.key,
            }
        )
    table = pd.DataFrame(rows)
    summary = gap_summary(table["supernet top-1 %"], table["standalone top-1 %"])
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.weight_sharing_vit "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "run": str(run.root),
        "checkpoint": str(run.checkpoint),
        "recipe": recipe.to_dict(),
        "data": data.split_note,
        "card_top1_test_max_abs_diff_pp": card_check,
        "summary": summary,
        "goals": {
            "mean_gap_within_1pp": abs(summary["mean_gap_pp"]) <= GOAL_GAP_PP,
            "kendall_tau_ge_0.7": summary["kendall_tau"] >= GOAL_TAU,
        },
        "wall_s": time.perf_counter() - start,
    }
    suffix = "_quick" if settings.quick else ""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT_DIR / f"weight_sharing_vit{suffix}.csv", index=False)
    (OUT_DIR / f"weight_sharing_vit{suffix}.json").write_text(json.dumps(report, indent=2))
    print("\n" + markdown(table.drop(columns=["config_key"])))
    s, goals = summary, report["goals"]
    print(
        f"\nMean gap (supernet − standalone) over {s['n']} subnets: {s['mean_gap_pp']:+.2f} pp, "
        f"95 % t interval [{s['ci95_low_pp']:+.2f}, {s['ci95_high_pp']:+.2f}] pp. "
        f"Kendall τ {s['kendall_tau']:.3f} (p = {s['kendall_p']:.3f})."
    )
    met = {True: "met", False: "not met"}
    print(f"Goal |mean gap| ≤ {GOAL_GAP_PP} pp: {met[goals['mean_gap_within_1pp']]}.")
    print(f"Goal τ ≥ {GOAL_TAU}: {met[goals['kendall_tau_ge_0.7']]}.")
    print(f"Wall time {report['wall_s']:.0f} s.")
    return report


if __name__ == "__main__":
    main()
