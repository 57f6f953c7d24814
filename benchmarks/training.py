"""Supernet training: sandwich step vs plain step, 1 vs 2 Ray workers, distillation, BN recal.

Run: ``python -m benchmarks.training`` (from the repository root; about 20 minutes on an idle
2-core machine).

1. Step throughput (images/s of the data batch, one thread): the sandwich step (largest +
   smallest + ``n_random`` random subnets, in-place distillation) against a plain training step
   of the largest network on the same batch; the ratio is the price of weight-sharing training.
2. Ray Train with 1 and 2 workers (one CPU each) on ``tiny_cnn``/digits: images/s of the
   second epoch, from the run's metrics, and the speed-up.
3. In-place distillation, a paired study: every seed trains the supernet twice with the same
   initialisation, data order, augmentation and sampled subnets, once with the students on
   labels only and once with the default distillation (T=3, weight 0.5); only the students'
   loss differs. Top-1 (test split by default, after BN re-calibration) of the smallest, a
   random and the largest subnet, mean ± sd per arm, and the paired difference on the smallest
   subnet: mean ± standard error, paired t-test and Wilcoxon signed-rank p-values.
   ``--jobs`` trainings run in parallel (one thread each).
4. BN re-calibration: top-1 of non-largest subnets with the shared (training) BN statistics
   against re-calibrated statistics.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import torch

import search_spaces
from nas.data.datasets import ImageData, load_digits_data
from nas.measure.accuracy import evaluate_accuracy
from nas.supernets.base import Supernet
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


# Section 3: each study trains the same seeds twice, once per arm; only the students' loss
# differs between the arms (same initialisation, data order, augmentation and sampled subnets).
DISTILLATION_ARMS: dict[str, dict[str, object]] = {
    "labels": {"distill": False},
    "distill": {},  # the default: T=3, weight 0.5
}
DISTILLATION_STUDIES: dict[str, dict[str, object]] = {
    "default": {},  # the default TrainConfig (no augmentation)
    "shift": {"augment": "shift"},  # random 1-pixel shifts, shared by teacher and students
}
DISTILLED_MODELS = ("default", "distill")  # the supernets section 4 re-calibrates


def _probes(space) -> dict[str, object]:
    return {
        "smallest": space.smallest(),
        "random": space.sample(np.random.default_rng(123)),
        "largest": space.largest(),
    }


def _train_and_probe(job: tuple[str, str, int, int, str, bool]) -> dict[str, object]:
    """One training of section 3 (runs in a worker process, one thread)."""
    study, arm, seed, epochs, split, keep_state = job
    torch.set_num_threads(1)
    space = search_spaces.get("tiny_cnn")
    data = load_digits_data(seed=0)
    options = {"epochs": epochs, **DISTILLATION_STUDIES[study], **DISTILLATION_ARMS[arm]}
    config = TrainConfig(batch_size=64, seed=seed, **options)  # type: ignore[arg-type]
    model, _ = train_locally(space, data, config, evaluate=False, log=None)
    row: dict[str, object] = {"study": f"{study}, {epochs} epochs", "arm": arm, "seed": seed}
    row["epochs"] = epochs
    for name, cfg in _probes(space).items():
        row[name] = 100 * evaluate_accuracy(copy.deepcopy(model), cfg, data, split=split)
    row["state"] = model.state_dict() if keep_state else None
    return row


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def paired_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study and arm: top-1 mean ± sd; distill − labels on the smallest subnet, paired."""
    from scipy import stats

    rows = []
    for study, frame in runs.groupby("study", sort=False):
        wide = {arm: frame[frame["arm"] == arm].set_index("seed") for arm in DISTILLATION_ARMS}
        labels, distill = wide["labels"], wide["distill"].loc[wide["labels"].index]
        for arm, table in wide.items():
            row: dict[str, object] = {"study": study, "arm": arm, "n": len(table)}
            for name in ("smallest", "random", "largest"):
                row[name] = _mean_sd(list(table[name]))
            rows.append(row)
        diff = (distill["smallest"] - labels["smallest"]).to_numpy()
        random_diff = (distill["random"] - labels["random"]).to_numpy()
        n = len(diff)
        rows.append(
            {
                "study": study,
                "arm": "distill - labels (paired)",
                "n": n,
                "smallest": f"{diff.mean():+.2f} ± {diff.std(ddof=1) / np.sqrt(n):.2f} (SE)",
                "random": f"{random_diff.mean():+.2f} ± "
                f"{random_diff.std(ddof=1) / np.sqrt(n):.2f} (SE)",
                "largest": "",
                "p (t, smallest)": f"{stats.ttest_1samp(diff, 0.0)[1]:.3g}",  # paired t-test
                "p (Wilcoxon)": f"{stats.wilcoxon(diff, zero_method='zsplit')[1]:.3g}",
                "wins/ties/losses": f"{(diff > 0).sum()}/{(diff == 0).sum()}/{(diff < 0).sum()}",
            }
        )
    return pd.DataFrame(rows).astype(object).fillna("")


def distillation(
    *, studies: list[str], epochs: list[int], seeds: int, split: str, jobs: int
) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Paired study: every seed trained with and without in-place distillation.

    Returns the summary, the per-seed runs and the default-distillation supernets of the
    first budget in ``epochs`` (for section 4).
    """
    work = [
        (study, arm, seed, n, split, (study, arm) == DISTILLED_MODELS and n == epochs[0])
        for study in studies
        for n in epochs
        for seed in range(seeds)
        for arm in DISTILLATION_ARMS
    ]
    work.sort(key=lambda job: -job[3])  # longest trainings first, to balance the processes
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(_train_and_probe, work))
    else:
        rows = [_train_and_probe(job) for job in work]
    space = search_spaces.get("tiny_cnn")
    models = []
    for row in rows:
        state = row.pop("state")
        if state is not None:
            model = Supernet(space)
            model.load_state_dict(state)
            models.append(model)
    runs = pd.DataFrame(rows).sort_values(["epochs", "seed"], kind="stable")
    return paired_summary(runs), runs, models


def recalibration(data: ImageData, models: list, *, n_random: int, split: str) -> pd.DataFrame:
    space = search_spaces.get("tiny_cnn")
    rng = np.random.default_rng(7)
    configs = {"smallest": space.smallest(), "largest": space.largest()}
    configs.update({f"random {i}": space.sample(rng) for i in range(n_random)})
    x, y = data.tensors(split)
    rows = []
    for name, cfg in configs.items():
        stale, fresh = [], []
        for model in models:
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
    parser.add_argument(
        "--epochs", default="12,24", help="comma-separated training budgets of section 3"
    )
    parser.add_argument("--seeds", type=int, default=16, help="paired seeds of section 3")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument(
        "--studies",
        default="default",
        help=f"comma-separated recipes of section 3, of {list(DISTILLATION_STUDIES)}",
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes for section 3")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--only-distillation", action="store_true", help="sections 3 and 4")
    parser.add_argument("--runs-csv", help="write section 3's per-seed top-1 here")
    parser.add_argument("--ray-epochs", type=int, default=2)
    args = parser.parse_args()
    studies = args.studies.split(",")
    epochs = [int(n) for n in args.epochs.split(",")]
    unknown = sorted(set(studies) - set(DISTILLATION_STUDIES))
    if unknown:
        parser.error(f"--studies {unknown} not in {list(DISTILLATION_STUDIES)}")
    torch.set_num_threads(1)
    data = load_digits_data(seed=0)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if not args.only_distillation:
        print("\n## 1. Step throughput (batch 64, 1 thread)")
        frame = step_throughput(data, batch=64, n_random=2, repeats=30)
        print(frame.round(2).to_string(index=False))
    if not (args.skip_ray or args.only_distillation):
        print(f"\n## 2. Ray Train workers ({args.ray_epochs} epochs, 1 CPU per worker)")
        print(ray_workers(data, epochs=args.ray_epochs).round(2).to_string(index=False))
    print(
        f"\n## 3. In-place distillation ({args.epochs} epochs, {args.seeds} paired seeds, "
        f"{args.split} top-1 % after BN re-calibration)"
    )
    start = time.perf_counter()
    table, runs, models = distillation(
        studies=studies, epochs=epochs, seeds=args.seeds, split=args.split, jobs=args.jobs
    )
    print(table.round(4).to_string(index=False))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.runs_csv:
        runs.to_csv(args.runs_csv, index=False)
    if not models:
        return
    print(f"\n## 4. BN re-calibration (default supernets, {args.split} top-1 %, mean over seeds)")
    table = recalibration(data, models, n_random=3, split=args.split)
    print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
