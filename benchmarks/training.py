"""Supernet training: sandwich step vs plain step, 1 vs 2 Ray workers, distillation, BN recal.

Run: ``python -m benchmarks.training`` (from the repository root; about 5 minutes on 2 cores).

1. Step throughput (images/s of the data batch, one thread): the sandwich step (largest +
   smallest + ``n_random`` random subnets, in-place distillation) against a plain training step
   of the largest network on the same batch; the ratio is the price of weight-sharing training.
2. Ray Train with 1 and 2 workers (one CPU each) on ``tiny_cnn``/digits: images/s of the
   second epoch, from the run's metrics, and the speed-up.
3. In-place distillation: top-1 (test split by default, after BN re-calibration) of the
   smallest, a random and the largest subnet after the same training budget, trained on labels,
   with the default distillation and with pure in-place distillation; mean ± sd over seeds.
4. BN re-calibration: top-1 of non-largest subnets with the shared (training) BN statistics
   against re-calibrated statistics.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import numpy as np
import pandas as pd
import torch

import search_spaces
from nas.data import ImageData, load_digits_data
from nas.measure.accuracy import evaluate_accuracy
from nas.supernet import Supernet
from nas.training.config import TrainConfig
from nas.training.loop import make_optimizer, train_locally
from nas.training.sampling import sandwich_configs
from nas.training.step import SandwichObjective, sandwich_backward


def step_throughput(data: ImageData, *, batch: int, n_random: int, repeats: int) -> pd.DataFrame:
    space = search_spaces.get("tiny_cnn")
    x, y = data.tensors("train")
    x, y = x[:batch], y[:batch]
    rows = []
    for name, students_of in (
        ("plain (largest only)", lambda step: []),
        (f"sandwich (largest + smallest + {n_random} random)", None),
    ):
        torch.manual_seed(0)
        model = Supernet(space)
        objective = SandwichObjective(model)
        optimizer = make_optimizer(model, TrainConfig())
        times = []
        for step in range(repeats + 3):
            largest, students = sandwich_configs(space, seed=0, step=step, n_random=n_random)
            if students_of is not None:
                students = students_of(step)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            sandwich_backward(objective, x, y, largest, students)
            optimizer.step()
            if step >= 3:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"step": name, "ms/step": 1000 * median, "images/s": batch / median})
    frame = pd.DataFrame(rows)
    frame["ratio vs plain"] = frame["images/s"] / frame["images/s"].iloc[0]
    return frame


def ray_workers(data: ImageData, *, epochs: int) -> pd.DataFrame:
    import ray

    from nas.execution.ray_training import train_supernet

    space = search_spaces.get("tiny_cnn")
    config = TrainConfig(epochs=epochs, batch_size=64, calib_images=128)
    rows = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = train_supernet(space, data, config, run_dir=tmp, num_workers=workers)
                wall = time.perf_counter() - start
            last = result.metrics.iloc[-1]
            rows.append(
                {
                    "workers": workers,
                    "images/s (last epoch)": float(last["samples_per_s"]),
                    "epoch train s": float(last["train_seconds"]),
                    "wall s (incl. start-up, eval)": wall,
                    "top1 largest": float(last["top1_largest"]),
                    "top1 smallest": float(last["top1_smallest"]),
                }
            )
    finally:
        ray.shutdown()
    frame = pd.DataFrame(rows)
    frame["speed-up"] = frame["images/s (last epoch)"] / frame["images/s (last epoch)"].iloc[0]
    return frame


DISTILLATION_SETTINGS: dict[str, dict[str, object]] = {
    "labels (no distillation)": {"distill": False},
    "distill T=3, w=0.5 (default)": {},
    "pure in-place distill T=1, w=1 (BigNAS)": {"distill_temperature": 1.0, "distill_weight": 1.0},
}


def distillation(
    data: ImageData, *, epochs: int, seeds: int, split: str
) -> tuple[pd.DataFrame, list]:
    space = search_spaces.get("tiny_cnn")
    probes = {
        "smallest": space.smallest(),
        "random": space.sample(np.random.default_rng(123)),
        "largest": space.largest(),
    }
    results: dict[tuple[str, str], list[float]] = {}
    models = []
    for setting, options in DISTILLATION_SETTINGS.items():
        for seed in range(seeds):
            config = TrainConfig(epochs=epochs, batch_size=64, seed=seed, **options)  # type: ignore[arg-type]
            model, _ = train_locally(space, data, config, evaluate=False, log=None)
            models.append((setting, seed, model))
            for name, cfg in probes.items():
                top1 = 100 * evaluate_accuracy(copy.deepcopy(model), cfg, data, split=split)
                results.setdefault((setting, name), []).append(top1)
    rows = []
    baseline = next(iter(DISTILLATION_SETTINGS))
    for setting in DISTILLATION_SETTINGS:
        row: dict[str, object] = {"training": setting}
        for name in probes:
            values = results[(setting, name)]
            row[f"{name} top1"] = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
        values = results[(setting, "smallest")]
        row["smallest vs labels (pp)"] = statistics.mean(values) - statistics.mean(
            results[(baseline, "smallest")]
        )
        rows.append(row)
    return pd.DataFrame(rows), models


def recalibration(data: ImageData, models: list, *, n_random: int, split: str) -> pd.DataFrame:
    space = search_spaces.get("tiny_cnn")
    rng = np.random.default_rng(7)
    configs = {"smallest": space.smallest(), "largest": space.largest()}
    configs.update({f"random {i}": space.sample(rng) for i in range(n_random)})
    x, y = data.tensors(split)
    rows = []
    for name, cfg in configs.items():
        stale, fresh = [], []
        for setting, _, model in models:
            if setting != "distill T=3, w=0.5 (default)":
                continue
            with torch.no_grad():
                pred = copy.deepcopy(model).eval()(x, cfg).argmax(1)
            stale.append(100 * float((pred == y).float().mean()))
            fresh.append(100 * evaluate_accuracy(copy.deepcopy(model), cfg, data, split=split))
        rows.append(
            {
                "subnet": name,
                "shared BN stats top1": statistics.mean(stale),
                "re-calibrated top1": statistics.mean(fresh),
                "change (pp)": statistics.mean(fresh) - statistics.mean(stale),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--ray-epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_digits_data(seed=0)
    pd.set_option("display.width", 160)
    print("\n## 1. Step throughput (batch 64, 1 thread)")
    print(step_throughput(data, batch=64, n_random=2, repeats=30).round(2).to_string(index=False))
    if not args.skip_ray:
        print(f"\n## 2. Ray Train workers ({args.ray_epochs} epochs, 1 CPU per worker)")
        print(ray_workers(data, epochs=args.ray_epochs).round(2).to_string(index=False))
    print(
        f"\n## 3. In-place distillation ({args.epochs} epochs, {args.seeds} seeds, "
        f"{args.split} top-1 % after BN re-calibration)"
    )
    table, models = distillation(data, epochs=args.epochs, seeds=args.seeds, split=args.split)
    print(table.round(2).to_string(index=False))
    print(f"\n## 4. BN re-calibration (default supernets, {args.split} top-1 %, mean over seeds)")
    table = recalibration(data, models, n_random=3, split=args.split)
    print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
