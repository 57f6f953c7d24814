"""Weight sharing on Fashion-MNIST: is one supernet as good as training every network alone?

Run from the repository root on a finished default run (``nas run experiments/default.toml``)::

    python -m benchmarks.weight_sharing --run runs/default       # --quick: a smoke run

1. **Supernet subnets vs standalone.** ``--subnets`` configs: the space's smallest and largest
   plus configs of the run's exported front spread evenly along their measured latency (a front
   too short is filled up with measured subnets of ``measure/results.jsonl``: the best by
   validation top-1 and latency, non-dominated layer by layer, evenly along latency). For each:
   test top-1 from the supernet weights after BN re-calibration on the calib split (the images
   and count the run's export used), and test top-1 of the same architecture trained alone from
   scratch with the run's ``[train]`` recipe (labels only; its BN statistics are its own running
   statistics from training). Mean gap with a 95 % t interval over subnets, Kendall τ between
   the two rankings.
2. **Hand-scaled family** (the MobileNet way): members of uniform width and depth multipliers of
   the largest network, kernel, expand and bits at their largest, each trained alone with the
   same recipe. Test error and latency on ``cpu_fp32_b64`` (one interleaved session for every
   latency of this benchmark) for the family and for the run's exported front, hypervolume of
   each, and training CPU-seconds: the one supernet against the whole family.

Standalone networks are a fresh :class:`~nas.supernets.base.Supernet` that is only ever run at one
config, not the static ``Supernet(space).export(config)``: the export freezes quantization
(weights stored already quantized, activation scales as buffers), so training it would train a
float network for configs below 32 bits. A supernet run at one config has exactly that
subnet's forward pass, its quantization-aware training included; weights outside the config
get no gradient and are never used.

Nothing here is chosen on the test split: subnets come from the front and the validation
measurements, the recipe from the run's spec, the hypervolume reference point is fixed below.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import multiprocessing
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch
from torch import Tensor, nn

import search_spaces
from benchmarks.provenance import provenance
from nas.artifacts.export import exported_paths, read_card
from nas.data.datasets import IdxSplitSizes, ImageData, load_data
from nas.errors import ConfigError
from nas.measure.accuracy import evaluate_accuracy
from nas.measure.cost import compute_cost
from nas.measure.evaluate import measure_config
from nas.measure.latency import LatencyProtocol, NoisyMeasurementWarning
from nas.measure.targets import HardwareTarget
from nas.pareto import hypervolume, non_dominated, reference_point_from
from nas.results import ResultStore
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from nas.training.augment import augment_batch
from nas.training.checkpoint import load_supernet
from nas.training.config import TrainConfig
from nas.training.ema import WeightAverage
from nas.training.loop import (
    epoch_loader,
    make_optimizer,
    make_scheduler,
    steps_per_epoch,
    train_epoch,
)
from nas.training.step import SandwichObjective, sandwich_backward

TARGET = {
    "name": "cpu_fp32_b64",
    "runtime": "torch",
    "precision": "fp32",
    "threads": 1,
    "batch_size": 64,
}
ACCURACY_TARGET = "any"  # the result store's target of target-free metrics (top-1, costs)
# Hypervolume on (test error as a fraction, latency / max latency over both sets), minimised.
# Fixed before any number was seen: error 1.0 is the worst possible, latency 1.1 lets the
# slowest point of either set contribute. The union's nadir + 10 % is reported beside it.
REFERENCE_POINT = (1.0, 1.1)
# Ray Train workers of a run reserve ``ray.cpus_per_worker`` CPUs each and pin torch to that
# many threads (nas.execution.ray_training: threads=int(cpus_per_worker)); runs made before
# the key existed used one.
DEFAULT_THREADS_PER_WORKER = 1
# Family members, in the order --family takes them: (width level, depth level); level k of 3
# is the k-th width choice of every stage and the depth ceil((k + 1) / 3 · max depth).
FAMILY_ORDER = ((0, 0), (1, 1), (2, 2), (1, 0), (2, 1), (0, 1), (1, 2), (0, 2), (2, 0))
LEVELS = 3
OUT_DIR = Path("benchmarks/out")
GOAL_GAP_PP = -0.5  # mean gap supernet − standalone at least this, CI upper end above 0
GOAL_TAU = 0.8
RESULTS_DIR = Path("benchmarks/results")


# -- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What this benchmark needs from a finished run directory."""

    root: Path
    spec: dict[str, Any]
    space: SearchSpace
    recipe: TrainConfig
    checkpoint: Path
    calib_images: int
    protocol: LatencyProtocol
    num_workers: int
    threads_per_worker: int


def _resolve(root: Path, path: str) -> Path:
    """A path a DONE marker stores: absolute, relative to the run dir or to the working dir."""
    p = Path(path)
    if p.is_absolute():
        return p
    for candidate in (root / p, p):
        if candidate.exists():
            return candidate
    return root / p


def load_run(root: str | Path) -> Run:
    """Read a finished run: spec, space, training recipe, supernet checkpoint.

    Raises:
        ConfigError: the run has not finished (no ``export/DONE.json``) or is not Fashion-MNIST.
    """
    root = Path(root)
    if not (root / "export" / "DONE.json").exists():
        raise ConfigError(
            f"{root}/export/DONE.json does not exist: the run has not finished "
            f"(`nas run experiments/default.toml` produces runs/default)"
        )
    spec = json.loads((root / "spec.json").read_text())
    if spec["data"]["kind"] != "fashion_mnist":
        raise ConfigError(f"{root}: data.kind={spec['data']['kind']!r}, expected 'fashion_mnist'")
    space = search_spaces.get(spec["space"]["name"], **spec["space"]["options"])
    # the same TrainConfig nas.pipeline.train_config builds: the [train] table, seeded by the spec
    recipe = TrainConfig.from_dict({"seed": spec["seed"], **spec["train"]["options"]})
    done = json.loads((root / "train" / "DONE.json").read_text())
    measure = spec["measure"]
    return Run(
        root=root,
        spec=spec,
        space=space,
        recipe=recipe,
        checkpoint=_resolve(root, done["checkpoint"]),
        calib_images=int(measure["calib_images"]),
        protocol=LatencyProtocol(
            warmup=int(measure["latency_warmup"]), repeats=int(measure["latency_repeats"])
        ),
        num_workers=int(spec["ray"]["num_workers"]),
        threads_per_worker=int(spec["ray"].get("cpus_per_worker", DEFAULT_THREADS_PER_WORKER)),
    )


def split_sizes(spec: dict[str, Any], *, train: int | None = None) -> IdxSplitSizes:
    """The run's split sizes (``train`` overrides the training subset, for --quick)."""
    d = spec["data"]
    return IdxSplitSizes(
        val=int(d["val_size"]),
        calib=int(d["calib_size"]),
        train=train if train is not None else d["train_size"],
    )


@functools.lru_cache(maxsize=2)
def load_fashion(seed: int, sizes: IdxSplitSizes) -> ImageData:
    """Fashion-MNIST with the run's splits (cached: each worker process loads it once)."""
    return load_data("fashion_mnist", seed=seed, sizes=sizes)


def front_cards(run: Run) -> list[tuple[SubnetConfig, dict[str, Any]]]:
    """Configs of the run's exported front with their cards' measured metrics, export order."""
    out = []
    for path in exported_paths(run.root / "export"):
        card = read_card(path)
        out.append((run.space.validate(card["config"]), dict(card["metrics"]["measured"])))
    return out


# -- choosing subnets ----------------------------------------------------------------------------
def evenly(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` items at evenly spaced positions of ``items`` (all of them when there are fewer)."""
    if k >= len(items):
        return list(items)
    if k <= 0:
        return []
    picks = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in picks]


def measured_candidates(space: SearchSpace, store: ResultStore) -> pd.DataFrame:
    """Configs with validation top-1 and latency in the run's store, by non-dominated layer.

    Layer 0 is the measured Pareto front of (top-1 max, latency min); layer 1 the front of the
    rest, and so on. "Best-accuracy ones" are taken layer by layer.
    """
    rows = []
    for e in store.evaluations(target=ACCURACY_TARGET, source="measured"):
        latency = store.get(e.config, TARGET["name"])
        if latency is None or "top1" not in e.metrics:
            continue
        config = space.canonical(e.config)
        rows.append(
            {
                "key": config.key,
                "config": config,
                "val_top1": float(e.metrics["top1"]),
                "latency_ms": float(latency.metrics["latency_ms"]),
            }
        )
    frame = pd.DataFrame(rows).drop_duplicates("key").reset_index(drop=True)
    frame["layer"] = -1
    layer = 0
    while (frame["layer"] < 0).any():
        rest = frame.index[frame["layer"] < 0]
        F = np.column_stack(
            [-frame.loc[rest, "val_top1"].to_numpy(), frame.loc[rest, "latency_ms"].to_numpy()]
        )
        frame.loc[rest[non_dominated(F)], "layer"] = layer
        layer += 1
    return frame


def choose_subnets(run: Run, n: int) -> list[tuple[str, SubnetConfig]]:
    """``n`` subnets: smallest, largest, the front evenly along latency, then measured fill-ups.

    Returns:
        ``(origin, canonical config)`` pairs; origin says why each was chosen.
    """
    space = run.space
    chosen: dict[str, tuple[str, SubnetConfig]] = {}

    def add(origin: str, config: SubnetConfig) -> None:
        config = space.canonical(config)
        if config.key in chosen:
            old, _ = chosen[config.key]
            chosen[config.key] = (f"{old}+{origin}", config)
        else:
            chosen[config.key] = (origin, config)

    add("smallest", space.smallest())
    add("largest", space.largest())
    front = front_cards(run)
    for c, _ in front:
        if space.canonical(c).key in chosen:
            add("front", c)  # already chosen: only the label changes
    fresh = {
        space.canonical(c).key: (c, m) for c, m in front if space.canonical(c).key not in chosen
    }
    latency_key = f"latency_ms@{TARGET['name']}"
    if all(latency_key in m for _, m in fresh.values()):
        order = {k: float(m[latency_key]) for k, (_, m) in fresh.items()}
    else:  # cards without latency: MACs order a front the same way
        order = {k: float(compute_cost(space, c).macs) for k, (c, _) in fresh.items()}
    fresh_configs = [fresh[k][0] for k in sorted(fresh, key=order.__getitem__)]
    for c in evenly(fresh_configs, n - len(chosen)):
        add("front", c)
    need = n - len(chosen)
    if need > 0:
        store = ResultStore(run.root / "measure" / "results.jsonl")
        candidates = measured_candidates(space, store)
        candidates = candidates[~candidates["key"].isin(list(chosen))]
        pool = []
        for _, group in candidates.groupby("layer", sort=True):
            pool.extend(group.itertuples())
            if len(pool) >= need:
                break
        pool.sort(key=lambda r: r.latency_ms)
        for r in evenly(pool, need):
            add(f"measured (layer {r.layer})", r.config)
    return list(chosen.values())


def family_configs(space: SearchSpace, n: int) -> list[tuple[str, SubnetConfig]]:
    """The first ``n`` members of :data:`FAMILY_ORDER`, by MACs.

    Member (w, d): the w-th width choice of every stage (of three levels), depth
    ``ceil((d + 1) / 3 · max depth)`` per stage, largest kernel and expand, 32 bits.
    """
    if not 1 <= n <= len(FAMILY_ORDER):
        raise ConfigError(f"--family={n} must be in 1..{len(FAMILY_ORDER)}")
    largest = space.largest().to_dict()
    stages = sorted({name.split(".")[0] for name in space.names})
    members = []
    for w, d in FAMILY_ORDER[:n]:
        values = dict(largest)
        for s in stages:
            widths = space.dim(f"{s}.width").options
            depths = space.dim(f"{s}.depth").options
            values[f"{s}.width"] = widths[round(w * (len(widths) - 1) / (LEVELS - 1))]
            need = math.ceil((d + 1) * int(max(depths)) / LEVELS)  # type: ignore[call-overload]
            values[f"{s}.depth"] = min(v for v in depths if int(v) >= need)  # type: ignore[call-overload]
        config = space.canonical(values)
        members.append((f"w{w}d{d}", config))
    members.sort(key=lambda m: compute_cost(space, m[1]).macs)
    return members


def describe_member(space: SearchSpace, config: SubnetConfig) -> str:
    """``widths (…) depths (…)`` of a config, for the README."""
    stages = sorted({name.split(".")[0] for name in space.names})
    widths = ",".join(str(config[f"{s}.width"]) for s in stages)
    depths = ",".join(str(config[f"{s}.depth"]) for s in stages)
    return f"widths {widths}, depths {depths}"


# -- training alone ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StandaloneJob:
    """One architecture trained alone (picklable: runs in a worker process)."""

    key: str
    config: dict[str, Any]
    space_name: str
    space_options: dict[str, Any]
    recipe: dict[str, Any]
    data_seed: int
    sizes: IdxSplitSizes
    calib_images: int


@torch.no_grad()
def top1(model: nn.Module, config: SubnetConfig, x: Tensor, y: Tensor) -> float:
    """Top-1 (%) in eval mode, with whatever BN statistics the model holds."""
    was_training = model.training
    model.eval()
    correct = 0
    for xs, ys in zip(x.split(1024), y.split(1024), strict=True):
        correct += int((model(xs, config).argmax(1) == ys).sum())
    model.train(was_training)
    return 100.0 * correct / len(y)


def train_standalone(
    space: SearchSpace, config: SubnetConfig, data: ImageData, recipe: TrainConfig
) -> tuple[Supernet, dict[str, float]]:
    """Train ``config`` alone from scratch with ``recipe``: labels only, seeded by its seed.

    The optimizer, schedule, data order and augmentation are the supernet's own
    (``make_optimizer``, ``make_scheduler``, ``epoch_loader``, ``augment_batch``); the step is
    ``sandwich_backward`` with no students, i.e. a plain label-loss step of one network.
    The recipe parts that apply to one network apply here too (``zero_init_residual``,
    ``ema_decay``, ``lr_floor``, label smoothing); a ``warm_start`` does not: twins start
    from scratch.

    Returns:
        The trained model (a supernet only ever run at ``config``) and its training cost:
        ``cpu_s`` (``time.process_time`` of this process, one torch thread) and ``wall_s``.
    """
    torch.manual_seed(recipe.seed)
    model = Supernet(space)
    if recipe.zero_init_residual:
        model.zero_init_residuals()  # type: ignore[operator]
    objective = SandwichObjective(model)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch(data, recipe))
    ema = WeightAverage(model, recipe.ema_decay) if recipe.ema_decay > 0 else None
    model.train()
    cpu, wall = time.process_time(), time.perf_counter()
    step = 0
    for epoch in range(recipe.epochs):
        for x, y in epoch_loader(data, recipe, epoch):
            x = augment_batch(x, recipe.augment, seed=recipe.seed, step=step)
            optimizer.zero_grad(set_to_none=True)
            sandwich_backward(
                objective,
                x,
                y,
                config,
                [],
                label_smoothing=recipe.label_smoothing,
                micro_batches=recipe.micro_batches,
            )
            if recipe.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update()
            scheduler.step()
            step += 1
    cost = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    return (model if ema is None else ema.module), cost  # type: ignore[return-value]


def run_standalone_job(job: StandaloneJob) -> dict[str, Any]:
    """Train one job with one torch thread and report its test top-1 and cost."""
    torch.set_num_threads(1)
    space = search_spaces.get(job.space_name, **job.space_options)
    config = space.validate(job.config)
    data = load_fashion(job.data_seed, job.sizes)
    model, cost = train_standalone(space, config, data, TrainConfig.from_dict(job.recipe))
    x, y = data.tensors("test")
    row = {"key": job.key, "standalone_top1": top1(model, config, x, y), **cost}
    # a second look, not the reported gap: the same model with BN re-calibrated like the supernet
    row["standalone_recal_top1"] = 100.0 * evaluate_accuracy(
        model, config, data, split="test", n_calib=job.calib_images
    )
    return row


def train_all(jobs: Sequence[StandaloneJob], *, workers: int) -> dict[str, dict[str, Any]]:
    """Run the jobs (largest first, ``workers`` processes of one thread each); rows by key."""
    jobs = sorted(
        jobs,
        key=lambda j: (
            -compute_cost(
                search_spaces.get(j.space_name, **j.space_options),
                SubnetConfig.from_dict(j.config),
            ).macs
        ),
    )
    rows: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        results = map(run_standalone_job, jobs)
        for row in results:
            rows[row["key"]] = row
            _log_job(row, len(rows), len(jobs))
        return rows
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row in pool.map(run_standalone_job, jobs):
            rows[row["key"]] = row
            _log_job(row, len(rows), len(jobs))
    return rows


def _log_job(row: dict[str, Any], done: int, total: int) -> None:
    print(
        f"  trained {done}/{total} {row['key'][:12]}: test top-1 {row['standalone_top1']:.2f} %, "
        f"{row['cpu_s']:.0f} CPU-s, {row['wall_s']:.0f} s wall",
        flush=True,
    )


# -- supernet accuracy, latency ---------------------------------------------------------------
def supernet_top1(
    supernet: Supernet, configs: Sequence[SubnetConfig], data: ImageData, *, n_calib: int
) -> list[float]:
    """Test top-1 (%) from supernet weights, BN re-calibrated per config on ``n_calib`` images."""
    probe = copy.deepcopy(supernet)
    return [
        100.0 * evaluate_accuracy(probe, c, data, split="test", n_calib=n_calib) for c in configs
    ]


def measure_latencies(
    supernet: Supernet,
    configs: dict[str, SubnetConfig],
    target: HardwareTarget,
    protocol: LatencyProtocol,
    *,
    rounds: int,
    seed: int,
) -> pd.DataFrame:
    """Latency of every config in one session: ``rounds`` rounds, each in a shuffled order.

    Each call is one measurement of the protocol (warm-up, timed repeats, median) on the
    exported static module; a config's latency is the median over rounds, so slow drifts of the
    machine's load hit every config alike. Latency depends on the architecture only, so the
    run's supernet exports every config, the family's members included.
    """
    rng = np.random.default_rng(seed)
    keys = list(configs)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    noisy = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoisyMeasurementWarning)
        for _ in range(rounds):
            for i in rng.permutation(len(keys)):
                k = keys[i]
                evaluation = measure_config(
                    supernet, configs[k], target, protocol=protocol, seed=seed
                )
                samples[k].append(float(evaluation.metrics["latency_ms"]))
        noisy = sum(issubclass(w.category, NoisyMeasurementWarning) for w in caught)
    rows = []
    for k, values in samples.items():
        median = float(np.median(values))
        rows.append(
            {
                "key": k,
                "latency_ms": median,
                "latency_range_pct": 100.0 * (max(values) - min(values)) / median,
            }
        )
    frame = pd.DataFrame(rows)
    frame.attrs["noisy_measurements"] = noisy
    frame.attrs["measurements"] = rounds * len(keys)
    return frame


# -- statistics ----------------------------------------------------------------------------------
def gap_summary(supernet: Sequence[float], standalone: Sequence[float]) -> dict[str, float]:
    """Mean gap (supernet − standalone, pp) with a 95 % t interval, and Kendall τ-b."""
    gaps = np.asarray(supernet, dtype=float) - np.asarray(standalone, dtype=float)
    n = len(gaps)
    mean = float(gaps.mean())
    half = (
        float(scipy.stats.t.ppf(0.975, n - 1) * gaps.std(ddof=1) / math.sqrt(n))
        if n > 1
        else math.nan
    )
    tau = scipy.stats.kendalltau(supernet, standalone)
    return {
        "n": n,
        "mean_gap_pp": mean,
        "ci95_low_pp": mean - half,
        "ci95_high_pp": mean + half,
        "kendall_tau": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
    }


def hypervolumes(
    sets: dict[str, pd.DataFrame], reference: Sequence[float]
) -> dict[str, dict[str, float]]:
    """HV of each set on (test error fraction, latency / max latency of all sets), minimised.

    Besides the fixed ``reference``, the HV with the union's nadir + 10 % of its range
    (``nas.pareto.reference_point_from``) is reported.
    """
    max_latency = max(float(f["latency_ms"].max()) for f in sets.values())
    points = {
        name: np.column_stack(
            [1.0 - f["test_top1"].to_numpy() / 100.0, f["latency_ms"].to_numpy() / max_latency]
        )
        for name, f in sets.items()
    }
    nadir = reference_point_from(np.vstack(list(points.values())), margin=0.1)
    return {
        name: {
            "hv": hypervolume(F, reference),
            "hv_nadir_ref": hypervolume(F, nadir),
            "nadir_ref_error": float(nadir[0]),
            "nadir_ref_latency": float(nadir[1]),
            "max_latency_ms": max_latency,
        }
        for name, F in points.items()
    }


def supernet_training_cost(run: Run) -> dict[str, float]:
    """CPU-seconds of supernet training: Σ ``train_seconds`` × workers × threads per worker.

    ``train_seconds`` is each epoch's wall time of the training loop (per-epoch evaluation
    excluded), so this is wall × the CPUs the run held: an upper bound of its CPU time.
    """
    metrics = pd.read_csv(run.root / "train" / "metrics.csv")
    workers = int(metrics["workers"].iloc[-1]) if "workers" in metrics else run.num_workers
    wall = float(metrics["train_seconds"].sum())
    return {
        "epochs": len(metrics),
        "train_wall_s": wall,
        "workers": workers,
        "threads_per_worker": run.threads_per_worker,
        "cpu_s": wall * workers * run.threads_per_worker,
    }


def supernet_epoch_cost(
    space: SearchSpace, data: ImageData, recipe: TrainConfig, *, epochs: int
) -> dict[str, float]:
    """CPU-seconds of the run's sandwich training, re-measured here from one epoch (one thread).

    The run records wall time under whatever else the machine was running; this repeats its
    first epoch (the same batches and sampled subnets, fresh weights: a step's cost does not
    depend on them) under ``time.process_time``, the counter the family is measured with, and
    multiplies it by the ``epochs`` the run trained.
    """
    torch.manual_seed(recipe.seed)
    model = Supernet(space)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch(data, recipe))
    cpu, wall = time.process_time(), time.perf_counter()
    train_epoch(
        SandwichObjective(model),
        epoch_loader(data, recipe, 0),
        space=space,
        config=recipe,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=0,
        start_step=0,
    )
    epoch_cpu = time.process_time() - cpu
    return {
        "epoch_cpu_s": epoch_cpu,
        "epoch_wall_s": time.perf_counter() - wall,
        "epochs": epochs,
        "cpu_s": epoch_cpu * epochs,
    }


# -- output --------------------------------------------------------------------------------------
def markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """A markdown table (floats with ``digits`` decimals)."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


@dataclass(frozen=True)
class Settings:
    """Parsed command line."""

    run: Path
    epochs: int | None
    subnets: int
    family: int
    seed: int | None
    quick: bool
    jobs: int
    rounds: int


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"))
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's")
    parser.add_argument("--subnets", type=int, default=None, help="default 8 (quick: 3)")
    parser.add_argument("--family", type=int, default=None, help="default 5 (quick: 3)")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 epoch, 2000 train images, 3 + 3 nets"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings in parallel (1 thread)")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 5)")
    a = parser.parse_args(argv)
    return Settings(
        run=a.run,
        epochs=a.epochs if a.epochs is not None else (1 if a.quick else None),
        subnets=a.subnets if a.subnets is not None else (3 if a.quick else 8),
        family=a.family if a.family is not None else (3 if a.quick else 5),
        seed=a.seed,
        quick=a.quick,
        jobs=a.jobs,
        rounds=a.rounds if a.rounds is not None else (1 if a.quick else 5),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run both parts, print markdown tables, write CSV/JSON under ``benchmarks/out/``."""
    settings = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(1)
    run = load_run(settings.run)
    space = run.space
    seed = settings.seed if settings.seed is not None else int(run.spec["seed"])
    recipe = dataclasses.replace(
        run.recipe, seed=seed, epochs=settings.epochs or run.recipe.epochs, warm_start=""
    )
    sizes = split_sizes(run.spec, train=2000 if settings.quick else None)
    data = load_fashion(int(run.spec["seed"]), sizes)
    print(f"run {run.root}, checkpoint {run.checkpoint}")
    print(f"data: {data.split_note}")
    print(
        f"recipe: {recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr}, "
        f"{recipe.optimizer} (Nesterov), {recipe.lr_schedule}, weight decay {recipe.weight_decay},"
        f" seed {recipe.seed}; labels only"
    )

    # everything from the run is read now, before the trainings (a rerun may replace it)
    supernet, _ = load_supernet(run.checkpoint, space=space)
    supernet.eval()
    supernet_cost = supernet_training_cost(run)
    subnets = choose_subnets(run, settings.subnets)
    family = family_configs(space, settings.family)
    cards = front_cards(run)
    front = [space.canonical(c) for c, _ in cards]
    jobs: dict[str, StandaloneJob] = {}
    for _, config in [*subnets, *family]:
        jobs.setdefault(
            config.key,
            StandaloneJob(
                key=config.key,
                config=config.to_dict(),
                space_name=run.spec["space"]["name"],
                space_options=dict(run.spec["space"]["options"]),
                recipe=recipe.to_dict(),
                data_seed=int(run.spec["seed"]),
                sizes=sizes,
                calib_images=run.calib_images,
            ),
        )
    print(
        f"training {len(jobs)} networks alone ({len(subnets)} subnets, {len(family)} family "
        f"members, shared configs trained once) with {settings.jobs} process(es)",
        flush=True,
    )
    trained = train_all(list(jobs.values()), workers=settings.jobs)
    print("re-measuring one epoch of the run's supernet training", flush=True)
    supernet_remeasured = supernet_epoch_cost(
        space, data, run.recipe, epochs=int(supernet_cost["epochs"])
    )

    everything = {c.key: c for _, c in [*subnets, *family]} | {c.key: c for c in front}
    sn_top1 = dict(
        zip(
            everything,
            supernet_top1(supernet, list(everything.values()), data, n_calib=run.calib_images),
            strict=True,
        )
    )
    # the run's export scored the same configs the same way: the cards must agree
    card_test = [
        (space.canonical(c).key, float(m["top1_test"])) for c, m in cards if "top1_test" in m
    ]
    card_check = max((abs(sn_top1[k] - t) for k, t in card_test), default=math.nan)
    print(
        f"check: front test top-1 here vs the model cards' top1_test, max |Δ| {card_check:.3f} pp"
    )
    print(f"measuring latency of {len(everything)} configs, {settings.rounds} rounds", flush=True)
    latency = measure_latencies(
        supernet,
        everything,
        HardwareTarget.from_dict(TARGET),
        run.protocol,
        rounds=settings.rounds,
        seed=seed,
    ).set_index("key")

    # part 1
    part1 = pd.DataFrame(
        [
            {
                "subnet": c.key[:12],
                "origin": origin,
                "MACs (M)": compute_cost(space, c).metrics()["macs_m"],
                "supernet top-1 %": sn_top1[c.key],
                "standalone top-1 %": trained[c.key]["standalone_top1"],
                "gap pp": sn_top1[c.key] - trained[c.key]["standalone_top1"],
                "standalone re-calibrated %": trained[c.key]["standalone_recal_top1"],
                "latency ms": latency.loc[c.key, "latency_ms"],
                "standalone CPU-s": trained[c.key]["cpu_s"],
                "config_key": c.key,
            }
            for origin, c in subnets
        ]
    ).sort_values("MACs (M)")
    summary = gap_summary(part1["supernet top-1 %"], part1["standalone top-1 %"])

    # part 2
    family_frame = pd.DataFrame(
        [
            {
                "set": "family",
                "member": name,
                "architecture": describe_member(space, c),
                "MACs (M)": compute_cost(space, c).metrics()["macs_m"],
                "test_top1": trained[c.key]["standalone_top1"],
                "supernet_top1": sn_top1[c.key],
                "latency_ms": latency.loc[c.key, "latency_ms"],
                "train CPU-s": trained[c.key]["cpu_s"],
                "train wall-s": trained[c.key]["wall_s"],
                "config_key": c.key,
            }
            for name, c in family
        ]
    )
    front_frame = pd.DataFrame(
        [
            {
                "set": "front",
                "member": f"front {i}",
                "architecture": describe_member(space, c),
                "MACs (M)": compute_cost(space, c).metrics()["macs_m"],
                "test_top1": sn_top1[c.key],
                "supernet_top1": sn_top1[c.key],
                "latency_ms": latency.loc[c.key, "latency_ms"],
                "train CPU-s": math.nan,
                "train wall-s": math.nan,
                "config_key": c.key,
            }
            for i, c in enumerate(front)
        ]
    )
    hv = hypervolumes({"front": front_frame, "family": family_frame}, REFERENCE_POINT)
    family_cpu = float(family_frame["train CPU-s"].sum())
    family_wall = float(family_frame["train wall-s"].sum())

    wall = time.perf_counter() - start
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.weight_sharing "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "run": str(run.root),
        "checkpoint": str(run.checkpoint),
        "recipe": recipe.to_dict(),
        "data": data.split_note,
        "calib_images": run.calib_images,
        "latency": {
            "target": TARGET,
            "protocol": dataclasses.asdict(run.protocol),
            "rounds": settings.rounds,
            "noisy_measurements": latency.attrs.get("noisy_measurements"),
            "measurements": latency.attrs.get("measurements"),
        },
        "card_top1_test_max_abs_diff_pp": card_check,
        "part1": summary,
        "hypervolume": hv,
        "reference_point": list(REFERENCE_POINT),
        "supernet_training": supernet_cost,
        "supernet_training_remeasured": supernet_remeasured,
        "family_training": {"cpu_s": family_cpu, "wall_s": family_wall, "threads": 1},
        "goals": {
            "mean_gap_ge_-0.5pp": summary["mean_gap_pp"] >= GOAL_GAP_PP,
            "gap_ci95_upper_above_0": summary["ci95_high_pp"] > 0,
            "kendall_tau_ge_0.8": summary["kendall_tau"] >= GOAL_TAU,
            "higher_hv_both_references": hv["front"]["hv"] > hv["family"]["hv"]
            and hv["front"]["hv_nadir_ref"] > hv["family"]["hv_nadir_ref"],
            "higher_hv": hv["front"]["hv"] > hv["family"]["hv"],
            "lower_cost": supernet_cost["cpu_s"] < family_cpu,
            "lower_cost_remeasured": supernet_remeasured["cpu_s"] < family_cpu,
        },
        "wall_s": wall,
    }
    suffix = "_quick" if settings.quick else ""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    part1.to_csv(OUT_DIR / f"weight_sharing{suffix}_subnets.csv", index=False)
    pd.concat([family_frame, front_frame]).to_csv(
        OUT_DIR / f"weight_sharing{suffix}_family.csv", index=False
    )
    (OUT_DIR / f"weight_sharing{suffix}.json").write_text(json.dumps(report, indent=2))
    if not settings.quick:
        results = committed_result(part1, summary, hv, supernet_cost, family_cpu, report, argv)
        results["family_rows"] = family_rows(pd.concat([family_frame, front_frame]))
        results["nadir_reference_point"] = [
            hv["front"]["nadir_ref_error"],
            hv["front"]["nadir_ref_latency"],
        ]
        results["wall_s"] = wall
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / "weight_sharing.json").write_text(json.dumps(results, indent=1) + "\n")
    print_report(part1, family_frame, front_frame, report)
    return report


def committed_result(
    part1: pd.DataFrame,
    summary: dict[str, float],
    hv: dict[str, dict[str, float]],
    supernet_cost: dict[str, Any],
    family_cpu: float,
    report: dict[str, Any],
    argv: Sequence[str] | None,
) -> dict[str, Any]:
    """The small file committed under ``benchmarks/results/``: what the README quotes."""
    return {
        **provenance("benchmarks.weight_sharing", None if argv is None else list(argv)),
        "split": "test (official 10,000 images), after selection on the validation split",
        "recipe": report["recipe"],
        "mean_gap_pp": summary["mean_gap_pp"],
        "gap_ci95": [summary["ci95_low_pp"], summary["ci95_high_pp"]],
        "n_subnets": summary["n"],
        "kendall_tau": summary["kendall_tau"],
        "hv_front": hv["front"]["hv"],
        "hv_family": hv["family"]["hv"],
        "hv_front_nadir_ref": hv["front"]["hv_nadir_ref"],
        "hv_family_nadir_ref": hv["family"]["hv_nadir_ref"],
        "reference_point": report["reference_point"],
        "cpu_s_supernet": supernet_cost["cpu_s"],
        "cpu_s_supernet_remeasured": report["supernet_training_remeasured"]["cpu_s"],
        "cpu_s_family": family_cpu,
        "goals": report["goals"],
        "subnets": part1.drop(columns=["config_key"]).to_dict(orient="records"),
    }


def family_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Family members and front points as the committed file keeps them (missing: ``None``)."""
    columns = ["set", "member", "architecture", "MACs (M)", "test_top1", "latency_ms"]
    columns.append("train CPU-s")
    rows = frame[columns].to_dict(orient="records")
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in rows
    ]


def print_report(
    part1: pd.DataFrame, family: pd.DataFrame, front: pd.DataFrame, report: dict[str, Any]
) -> None:
    """The markdown tables and the goal lines."""
    s = report["part1"]
    goals = report["goals"]
    print("\n## 1. Supernet subnets vs standalone (test top-1 %)\n")
    print(markdown(part1.drop(columns=["config_key"])))
    print(
        f"\nMean gap (supernet − standalone) over {s['n']} subnets: {s['mean_gap_pp']:+.2f} pp, "
        f"95 % t interval [{s['ci95_low_pp']:+.2f}, {s['ci95_high_pp']:+.2f}] pp. "
        f"Kendall τ {s['kendall_tau']:.3f} (p = {s['kendall_p']:.3f})."
    )
    print(
        f"Goal mean gap ≥ {GOAL_GAP_PP} pp: {_met(goals['mean_gap_ge_-0.5pp'])}; interval's "
        f"upper end above 0: {_met(goals['gap_ci95_upper_above_0'])}."
    )
    print(f"Goal τ ≥ {GOAL_TAU}: {_met(goals['kendall_tau_ge_0.8'])}.")

    hv = report["hypervolume"]
    both = pd.concat([family, front])
    both = both.assign(
        **{
            "test error %": 100.0 - both["test_top1"],
            "supernet error %": 100.0 - both["supernet_top1"],
        }
    )
    print("\n## 2. Hand-scaled family vs the exported front (cpu_fp32_b64)\n")
    print(
        markdown(
            both[
                [
                    "set",
                    "member",
                    "architecture",
                    "MACs (M)",
                    "test error %",
                    "supernet error %",
                    "latency_ms",
                    "train CPU-s",
                ]
            ]
        )
    )
    ref = report["reference_point"]
    nadir = (hv["front"]["nadir_ref_error"], hv["front"]["nadir_ref_latency"])
    print(
        f"\nHypervolume on (test error, latency / {hv['front']['max_latency_ms']:.3f} ms), "
        f"reference ({ref[0]}, {ref[1]}): front {hv['front']['hv']:.4f}, family "
        f"{hv['family']['hv']:.4f} (ratio {hv['front']['hv'] / hv['family']['hv']:.4f}); with "
        f"the union's nadir + 10 % ({nadir[0]:.4f}, {nadir[1]:.4f}): front "
        f"{hv['front']['hv_nadir_ref']:.4f}, family {hv['family']['hv_nadir_ref']:.4f}."
    )
    st = report["supernet_training"]
    ft = report["family_training"]
    print(
        f"Training CPU-s: supernet {st['cpu_s']:.0f} (Σ train_seconds {st['train_wall_s']:.0f} s "
        f"wall over {st['epochs']} epochs × {st['workers']} worker × {st['threads_per_worker']} "
        f"thread); family {ft['cpu_s']:.0f} (Σ process CPU time, 1 thread each; wall "
        f"{ft['wall_s']:.0f} s)."
    )
    sr = report["supernet_training_remeasured"]
    print(
        f"Supernet re-measured here: {sr['epoch_cpu_s']:.0f} CPU-s for one epoch (process time, "
        f"1 thread; {sr['epoch_wall_s']:.0f} s wall) × {sr['epochs']} epochs = {sr['cpu_s']:.0f} "
        "CPU-s."
    )
    print(
        f"Goal higher hypervolume: {_met(goals['higher_hv'])}; at lower total training cost: "
        f"{_met(goals['lower_cost'])} (re-measured supernet cost: "
        f"{_met(goals['lower_cost_remeasured'])})."
    )
    lat = report["latency"]
    print(
        f"\nLatency: {lat['rounds']} interleaved rounds of warm-up {lat['protocol']['warmup']} + "
        f"{lat['protocol']['repeats']} timed runs, median of round medians; "
        f"{lat['noisy_measurements']} of {lat['measurements']} measurements flagged noisy "
        f"(CV > {lat['protocol']['noise_cv']})."
    )
    print(f"Wall time {report['wall_s']:.0f} s.")


if __name__ == "__main__":
    main()
