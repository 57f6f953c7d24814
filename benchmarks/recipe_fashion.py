"""Supernet training recipes on Fashion-MNIST, compared on the validation split with one seed.

Every variant trains the same space from the same initialisation on the same batches (seed 0,
so the comparison is paired) and reports validation top-1 of the largest, the smallest and a
fixed random subnet after BN re-calibration. The test split is not touched.

    python -m benchmarks.recipe_fashion --epochs 3 --variants base t1 nodistill nr1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (train options, space options)
    "base": ({}, {}),
    "t1": ({"distill_temperature": 1.0}, {}),
    "nodistill": ({"distill": False}, {}),
    "nr1": ({"n_random": 1}, {}),
    "t1_w1": ({"distill_temperature": 1.0, "distill_weight": 1.0}, {}),
    "t1_b32": ({"distill_temperature": 1.0}, {"bits": (32,)}),
}


def run_variant(name: str, epochs: int, train_size: int, val_size: int) -> dict[str, Any]:
    import torch

    import search_spaces
    from nas.data.datasets import IdxSplitSizes, load_data
    from nas.training.config import TrainConfig
    from nas.training.loop import train_locally

    torch.set_num_threads(1)
    train_options, space_options = VARIANTS[name]
    sizes = IdxSplitSizes(val=val_size, calib=1000, train=train_size)
    data = load_data("fashion_mnist", seed=0, sizes=sizes)
    space = search_spaces.get("fashion_cnn", **space_options)
    config = TrainConfig.from_dict(
        {"epochs": epochs, "batch_size": 128, "lr": 0.1, "seed": 0, "calib_images": 500}
        | train_options
    )
    start = time.perf_counter()
    _, metrics = train_locally(space, data, config, log=None)
    last = metrics.iloc[-1]
    return {
        "variant": name,
        **{k: round(float(last[k]), 2) for k in ("top1_largest", "top1_smallest", "top1_random")},
        "seconds": round(time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--val-size", type=int, default=2500)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    args = parser.parse_args()
    work = [(v, args.epochs, args.train_size, args.val_size) for v in args.variants]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.starmap(run_variant, work)
    print("| variant | largest | smallest | random | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['top1_largest']:.2f} | {r['top1_smallest']:.2f} | "
            f"{r['top1_random']:.2f} | {r['seconds']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
