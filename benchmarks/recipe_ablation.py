"""Paired ablation of supernet recipe parts on Fashion-MNIST's validation split.

Every variant trains the default experiment's space and recipe (``experiments/default.toml``:
``fashion_cnn`` at 32 bits, 6 epochs, batch 128, lr 0.1, in-place distillation at T = 1) with
one ``[train]`` change, from the same initialisation on the same batches for each seed, and
reports validation top-1 (after BN re-calibration on the calib split) of the same fixed
subnets: the largest, the smallest and subnets spread evenly over MACs. The change against the
base recipe is paired per subnet and seed; its 95 % t interval is over subnets (seed-averaged
differences). The test split is not touched.

    python -m benchmarks.recipe_ablation                    # 2 seeds, 10 subnets, ~30 min
    python -m benchmarks.recipe_ablation --quick            # a smoke run (CI)

The full run writes ``benchmarks/results/recipe_ablation.json``; ``--quick`` writes under
``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from benchmarks.provenance import provenance

# name: the [train] keys changed against the default experiment's recipe
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "lr_floor": {"lr_floor": 0.05},
    "zero_init": {"zero_init_residual": True},
    "ema": {"ema_decay": 0.99},
    "smooth_largest": {"label_smoothing": 0.1, "label_smoothing_on": "largest"},
    "distill_only": {"distill_weight": 1.0},
}
BASE_RECIPE: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 128,
    "lr": 0.1,
    "distill_temperature": 1.0,
    "calib_images": 500,
}
SUBNET_SEED = 2026  # which subnets are compared: fixed, the same for every variant and seed
RESULTS = Path("benchmarks/results/recipe_ablation.json")
QUICK_OUT = Path("benchmarks/out/recipe_ablation_quick.json")


@dataclass(frozen=True)
class Settings:
    epochs: int
    train_size: int
    val_size: int
    n_subnets: int
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    jobs: int
    quick: bool


def compared_subnets(n: int) -> list[Any]:
    """Largest, smallest and ``n - 2`` subnets at evenly spaced MACs quantiles of a sample."""
    import search_spaces
    from nas.measure.cost import compute_cost

    space = search_spaces.get("fashion_cnn", bits=(32,))
    rng = np.random.default_rng(SUBNET_SEED)
    pool = sorted(
        {c.key: c for c in (space.sample(rng) for _ in range(400))}.values(),
        key=lambda c: compute_cost(space, c).macs,
    )
    picks = [pool[round(q)] for q in np.linspace(0, len(pool) - 1, n - 2)]
    return [space.largest(), space.smallest(), *picks]


def train_and_score(variant: str, seed: int, settings: Settings) -> dict[str, Any]:
    """Train one (variant, seed) in this process (1 thread); val top-1 of every compared subnet."""
    import torch

    import search_spaces
    from nas.data.datasets import IdxSplitSizes, load_data
    from nas.measure.accuracy import evaluate_accuracy
    from nas.training.config import TrainConfig
    from nas.training.loop import train_locally

    torch.set_num_threads(1)
    sizes = IdxSplitSizes(val=settings.val_size, calib=1000, train=settings.train_size)
    data = load_data("fashion_mnist", seed=0, sizes=sizes)  # same split for every seed
    space = search_spaces.get("fashion_cnn", bits=(32,))
    options = BASE_RECIPE | {"epochs": settings.epochs, "seed": seed} | VARIANTS[variant]
    config = TrainConfig.from_dict(options)
    cpu, wall = time.process_time(), time.perf_counter()
    model, _ = train_locally(space, data, config, log=None, evaluate=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    top1 = [
        100.0 * evaluate_accuracy(model, c, data, split="val", n_calib=config.calib_images)
        for c in compared_subnets(settings.n_subnets)
    ]
    return {"variant": variant, "seed": seed, "val_top1": top1, "train_cpu_s": cpu, "wall_s": wall}


def paired_change(runs: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """Mean change against ``base`` over subnets (seed-averaged), with a 95 % t interval."""
    by = {(r["variant"], r["seed"]): np.asarray(r["val_top1"]) for r in runs}
    # The seeds this variant was trained with (an extended report adds seeds to some variants);
    # each is paired with base at the same seed.
    seeds = sorted(
        {r["seed"] for r in runs if r["variant"] == variant and ("base", r["seed"]) in by}
    )
    diffs = np.mean([by[(variant, s)] - by[("base", s)] for s in seeds], axis=0)
    mean = float(diffs.mean())
    if len(diffs) > 1 and diffs.std(ddof=1) > 0:
        half = float(scipy.stats.t.ppf(0.975, len(diffs) - 1) * scipy.stats.sem(diffs))
    else:
        half = 0.0
    top1 = np.mean([by[(variant, s)] for s in seeds], axis=0)
    cpu = float(np.mean([r["train_cpu_s"] for r in runs if r["variant"] == variant]))
    # The interval is over subnets of seed-averaged runs, so it omits seed-to-seed spread: a
    # part is kept only when every seed's mean change is positive as well.
    per_seed = [float(np.mean(by[(variant, s)] - by[("base", s)])) for s in seeds]
    return {
        "variant": variant,
        "changes": VARIANTS[variant],
        "mean_val_top1": float(top1.mean()),
        "largest_val_top1": float(top1[0]),
        "smallest_val_top1": float(top1[1]),
        "delta_pp": mean,
        "delta_ci95": [mean - half, mean + half],
        "delta_per_subnet_pp": [float(d) for d in diffs],
        "delta_per_seed_pp": per_seed,
        "train_cpu_s": cpu,
        "helps": mean - half > 0 and min(per_seed) > 0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--subnets", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=BASE_RECIPE["epochs"])
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--val-size", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="1 epoch, small data, 1 seed")
    parser.add_argument(
        "--extend",
        metavar="REPORT",
        help="train the (variant, seed) pairs of --variants and --seeds (base included) that a "
        "recorded report lacks, with its settings, and add them to it",
    )
    parser.add_argument(
        "--summarise",
        metavar="REPORT",
        help="re-derive the table of a recorded report from its runs (no training) and rewrite it",
    )
    args = parser.parse_args(argv)
    if args.summarise:
        return resummarise(Path(args.summarise))
    if args.extend:
        return extend(Path(args.extend), args.variants, args.seeds, args.jobs, argv)
    variants = tuple(dict.fromkeys(["base", *args.variants]))
    settings = Settings(
        epochs=1 if args.quick else args.epochs,
        train_size=1024 if args.quick else args.train_size,
        val_size=500 if args.quick else args.val_size,
        n_subnets=4 if args.quick else args.subnets,
        seeds=(0,) if args.quick else tuple(args.seeds),
        variants=variants[:2] if args.quick else variants,
        jobs=args.jobs,
        quick=args.quick,
    )
    work = [(v, s, settings) for v in settings.variants for s in settings.seeds]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(settings.jobs) as pool:
        runs = pool.starmap(train_and_score, work)
    table = [paired_change(runs, v) for v in settings.variants]
    report = {
        **provenance("benchmarks.recipe_ablation", argv),
        "split": f"validation, {settings.val_size} images (train {settings.train_size})",
        "settings": {k: v for k, v in vars(settings).items() if k != "jobs"},
        "base_recipe": BASE_RECIPE | {"epochs": settings.epochs},
        "subnets": [c.key for c in compared_subnets(settings.n_subnets)],
        "variants": table,
        "runs": runs,
        "wall_s": time.perf_counter() - start,
    }
    out = QUICK_OUT if settings.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return report


def extend(
    path: Path, variants: list[str], seeds: list[int], jobs: int, argv: list[str] | None
) -> dict[str, Any]:
    """Add missing (variant, seed) runs to a recorded report, paired with base at each seed.

    The new runs use the report's own settings, so they pair with the recorded ones; where they
    came from (command, commit, date) is kept in the report's ``extensions`` list.
    """
    report = json.loads(path.read_text())
    recorded = report["settings"]
    settings = Settings(
        epochs=recorded["epochs"],
        train_size=recorded["train_size"],
        val_size=recorded["val_size"],
        n_subnets=recorded["n_subnets"],
        seeds=tuple(recorded["seeds"]),
        variants=tuple(recorded["variants"]),
        jobs=jobs,
        quick=recorded["quick"],
    )
    if report["subnets"] != [c.key for c in compared_subnets(settings.n_subnets)]:
        raise SystemExit(f"{path}: its compared subnets are not this code's; rerun it whole")
    done = {(r["variant"], r["seed"]) for r in report["runs"]}
    wanted = dict.fromkeys(["base", *variants])
    work = [(v, s, settings) for v in wanted for s in seeds if (v, s) not in done]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        runs = pool.starmap(train_and_score, work)
    report["runs"] += runs
    report.setdefault("extensions", []).append(
        {
            **provenance("benchmarks.recipe_ablation", argv),
            "added": [[v, s] for v, s, _ in work],
            "wall_s": time.perf_counter() - start,
        }
    )
    report["variants"] = [paired_change(report["runs"], v) for v in report["settings"]["variants"]]
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return report


def resummarise(path: Path) -> dict[str, Any]:
    """Recompute a recorded report's summary rows from its runs; the measurements are kept."""
    report = json.loads(path.read_text())
    report["variants"] = [paired_change(report["runs"], v) for v in report["settings"]["variants"]]
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    """The ablation table as in ``benchmarks/README.md``."""
    n = len(report["subnets"])
    seeds = len(report["settings"]["seeds"])
    lines = [
        f"| variant | mean val top-1 of {n} subnets (%) | largest | smallest | "
        f"Δ vs base (pp) [95 % CI over subnets, {seeds} seed(s) unless the next column has "
        "more] | Δ per seed (pp) | helps | "
        "train CPU-s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["variants"]:
        low, high = row["delta_ci95"]
        lines.append(
            f"| {row['variant']} | {row['mean_val_top1']:.2f} | {row['largest_val_top1']:.2f} | "
            f"{row['smallest_val_top1']:.2f} | {row['delta_pp']:+.2f} [{low:+.2f}, {high:+.2f}] "
            f"| {', '.join(f'{d:+.2f}' for d in row.get('delta_per_seed_pp', []))} "
            f"| {'yes' if row['helps'] else 'no'} | {row['train_cpu_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
