"""Does importance re-ordering of heads and MLP neurons help a ViT supernet's smaller subnets?

Run from the repository root (in-process training, no Ray)::

    python -m benchmarks.weight_sharing_reorder       # --quick: a smoke run

Three supernets of the ``vit_fashion`` space are trained with the same seed, data order,
sampled subnets and recipe (the ``[train]`` table and splits of ``experiments/vit_fashion.toml``,
with ``phases = ["largest"]`` for the first epoch): ``train.reorder = "none"``,
``"activations"`` and ``"weights"`` (DynaBERT / Minitron re-ordering at the end of the largest
phase). Validation top-1 of the same
subnets from both: largest, smallest, the largest depth and width with the fewest heads and the
smallest MLP ratio everywhere ("narrow", where prefix choice matters most) and seeded random
subnets. Only the validation split is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch

import search_spaces
from benchmarks.weight_sharing import markdown
from nas.data.datasets import IdxSplitSizes, load_data
from nas.measure.accuracy import evaluate_accuracy
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.vit.supernet import vit_arch
from nas.training.config import TrainConfig
from nas.training.loop import train_locally

OUT_DIR = Path("benchmarks/out")
SPEC = Path("experiments/vit_fashion.toml")
REORDERS = ("none", "activations", "weights")


def subnets(space: SearchSpace, n_random: int, seed: int) -> list[tuple[str, SubnetConfig]]:
    """Largest, smallest, narrow (fewest heads, smallest MLP ratio) and seeded random ones."""
    arch = vit_arch(space)
    narrow = space.largest().replace(
        **{f"l{j}.heads": arch.heads[0] for j in range(arch.max_depth)},
        **{f"l{j}.mlp_ratio": arch.mlp_ratios[0] for j in range(arch.max_depth)},
    )
    rng = np.random.default_rng([seed, 7])
    return [
        ("largest", space.largest()),
        ("smallest", space.smallest()),
        ("narrow", narrow),
        *((f"random {i}", c) for i, c in enumerate(space.sample_many(n_random, rng))),
    ]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train both supernets, evaluate the same subnets on val, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=5, help="1 largest + the rest elastic")
    parser.add_argument("--random", type=int, default=10, help="random subnets evaluated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 images, 2 epochs")
    a = parser.parse_args(argv)
    if a.quick:
        a.train_size, a.epochs, a.random = 1000, 2, 2
    start = time.perf_counter()
    torch.set_num_threads(a.threads)
    spec = tomllib.loads(SPEC.read_text())
    seed = int(spec["seed"])
    space = search_spaces.get(spec["space"]["name"])
    sizes = IdxSplitSizes(
        val=int(spec["data"]["val_size"]),
        calib=int(spec["data"]["calib_size"]),
        train=a.train_size,
    )
    data = load_data("fashion_mnist", seed=seed, sizes=sizes)
    base = {**spec["train"], "seed": seed, "epochs": a.epochs}
    base |= {"phases": ("largest",), "phase_epochs": (1,)}
    configs = subnets(space, a.random, seed)
    print(f"data: {data.split_note}\nrecipe: {base}", flush=True)
    top1: dict[str, list[float]] = {}
    wall: dict[str, float] = {}
    for reorder in REORDERS:
        recipe = TrainConfig.from_dict({**base, "reorder": reorder})
        t0 = time.perf_counter()
        model, _ = train_locally(space, data, recipe, log=None, evaluate=False)
        wall[reorder] = time.perf_counter() - t0
        top1[reorder] = [
            100.0 * evaluate_accuracy(model, c, data, split="val", n_calib=1) for _, c in configs
        ]
        print(f"  reorder={reorder}: trained in {wall[reorder]:.0f} s", flush=True)
    n_val = data.sizes()["val"]
    table = pd.DataFrame({"subnet": [name for name, _ in configs]})
    for reorder in REORDERS:
        table[f"val top-1 % ({reorder})"] = top1[reorder]
    deltas: dict[str, dict[str, float]] = {}
    for reorder in REORDERS[1:]:
        table[f"Δ {reorder} pp"] = table[f"val top-1 % ({reorder})"] - table["val top-1 % (none)"]
        others = table[table["subnet"] != "largest"][f"Δ {reorder} pp"].to_numpy()
        half = float(scipy.stats.t.ppf(0.975, len(others) - 1) * others.std(ddof=1))
        deltas[reorder] = {
            "mean_pp": float(others.mean()),
            "ci95_half_pp": half / float(np.sqrt(len(others))),
            "better": int((others > 0).sum()),
            "worse": int((others < 0).sum()),
            "n": len(others),
        }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.weight_sharing_reorder "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": data.split_note,
        "val_images": n_val,
        "recipe": base,
        "delta_vs_none_without_largest": deltas,
        "train_wall_s": wall,
        "wall_s": time.perf_counter() - start,
        "configs": {name: c.to_dict() for name, c in configs},
    }
    suffix = "_quick" if a.quick else ""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT_DIR / f"weight_sharing_reorder{suffix}.csv", index=False)
    (OUT_DIR / f"weight_sharing_reorder{suffix}.json").write_text(
        json.dumps(report, indent=2, default=str)
    )
    print("\n" + markdown(table))
    for reorder, d in deltas.items():
        print(
            f"\nMean Δ ({reorder} − none) over the {d['n']} non-largest subnets: "
            f"{d['mean_pp']:+.2f} pp, 95 % t interval ±{d['ci95_half_pp']:.2f} pp; better on "
            f"{d['better']}, worse on {d['worse']} ({n_val} val images: one image is "
            f"{100 / n_val:.2f} pp)."
        )
    print(f"Wall {report['wall_s']:.0f} s.")
    return report


if __name__ == "__main__":
    main()
