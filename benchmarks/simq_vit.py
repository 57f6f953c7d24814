"""Per-layer bits vs all-int8 on a trained ViT supernet (a SimQ-NAS-style comparison).

SimQ-NAS searches a transformer's architecture together with a per-layer quantization policy
and compares the front against the all-INT8 model. This benchmark does the same on a finished
``vit_fashion`` run (read only):

1. search architecture and per-block bits together with a registered searcher over validation
   top-1 (supernet weights) × latency on an ``onnxruntime``/``mixed`` target (every layer on the
   real kernel of its block's bits, measured through :func:`nas.measure.latency.measure_latency`
   for every evaluated config) × bit-aware model size;
2. re-measure the searched front and the baseline, the largest subnet with every block at
   8 bits on the ``int8`` precision (the whole graph quantized to int8, the platform's all-int8
   deployment), in one session, interleaved round by round;
3. score front and baseline on the official test split from supernet weights (and as the
   targets deploy them), and report the latency and size ratios of the front subnets whose test
   accuracy is equal or better than the baseline's.

Run: ``RAY_ADDRESS=local nice -n 5 python -m benchmarks.simq_vit --run runs/vit_fashion``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.weight_sharing import Run, load_fashion, load_run, markdown, split_sizes
from nas.data.datasets import ImageData
from nas.deploy.mixed_precision import layer_bits
from nas.measure.accuracy import evaluate_accuracy
from nas.measure.cost import compute_cost
from nas.measure.deployed_accuracy import deployed_top1
from nas.measure.evaluate import measure_config
from nas.measure.latency import (
    LatencyProtocol,
    deployable,
    deployed,
    summarize_latency,
    time_runs,
)
from nas.measure.onnx_deploy import onnx_for_target
from nas.measure.targets import HardwareTarget
from nas.results import ResultStore
from nas.search import MetricEvaluator, SearchProblem, make_searcher, run_search
from nas.subnet import SubnetConfig
from nas.supernets import arch_of
from nas.supernets.base import Supernet
from nas.training.checkpoint import load_supernet

BASELINE_BITS = 8


@dataclass(frozen=True)
class Settings:
    """Command-line settings."""

    run: Path
    budget: int
    pop_size: int
    searcher: str
    batch: int
    rounds: int
    seed: int
    out: Path
    kernels: bool
    constraints: tuple[str, ...]


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs/vit_fashion"), help="finished run")
    p.add_argument("--budget", type=int, default=144, help="configs the search evaluates")
    p.add_argument("--pop-size", type=int, default=24, help="searcher population")
    p.add_argument("--searcher", default="pymoo-nsga2", help="registered searcher")
    p.add_argument("--batch", type=int, default=64, help="images per timed inference")
    p.add_argument("--rounds", type=int, default=4, help="interleaved re-measurement rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/simq_vit.json"))
    p.add_argument(
        "--kernels", action="store_true", help="only time the largest subnet's bit patterns"
    )
    p.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="search constraint, e.g. 'top1 >= 81.5' (validation top-1); repeatable",
    )
    a = p.parse_args(argv)
    return Settings(
        a.run,
        a.budget,
        a.pop_size,
        a.searcher,
        a.batch,
        a.rounds,
        a.seed,
        a.out,
        a.kernels,
        tuple(a.constraint),
    )


def targets(batch: int) -> tuple[HardwareTarget, HardwareTarget]:
    """The searched target (per-layer bits) and the baseline's (whole graph int8), 1 thread."""
    mixed = HardwareTarget(
        f"ort_mixed_b{batch}", runtime="onnxruntime", precision="mixed", batch_size=batch
    )
    int8 = HardwareTarget(
        f"ort_int8_b{batch}", runtime="onnxruntime", precision="int8", batch_size=batch
    )
    return mixed, int8


def all_bits(run: Run, config: SubnetConfig, bits: int) -> SubnetConfig:
    """``config`` with every block at ``bits``."""
    names = [n for n in run.space.names if n.endswith(".bits")]
    return run.space.validate(config.replace(**dict.fromkeys(names, bits)))


def input_shape(run: Run, target: HardwareTarget) -> tuple[int, int, int, int]:
    """``(batch, C, R, R)`` at the space's design resolution (no elastic resolution here)."""
    arch = arch_of(run.space)
    return target.input_shape(arch.in_channels, arch.resolution)


def make_evaluator(
    supernet: Supernet,
    data: ImageData,
    run: Run,
    target: HardwareTarget,
    protocol: LatencyProtocol,
) -> MetricEvaluator:
    """Validation top-1 (supernet weights), measured latency on ``target``, bit-aware size."""
    key = f"latency_ms@{target.name}"

    def evaluate(config: SubnetConfig) -> dict[str, float]:
        top1 = 100.0 * evaluate_accuracy(
            supernet, config, data, split="val", n_calib=run.calib_images
        )
        measured = measure_config(supernet, config, target, protocol=protocol).metrics
        return {
            "top1": top1,
            key: measured["latency_ms"],
            "model_size_bytes": measured["model_size_bytes"],
        }

    return MetricEvaluator(evaluate, ("top1", key, "model_size_bytes"))


def search(
    settings: Settings, supernet: Supernet, data: ImageData, run: Run, target: HardwareTarget
) -> tuple[list[SubnetConfig], pd.DataFrame]:
    """Run the searcher on measured values; the feasible non-dominated configs and all rows."""
    key = f"latency_ms@{target.name}"
    problem = SearchProblem.from_strings(
        run.space, ["top1:max", f"{key}:min", "model_size_bytes:min"], settings.constraints
    )
    searcher = make_searcher(
        settings.searcher, problem, seed=settings.seed, options={"pop_size": settings.pop_size}
    )
    protocol = LatencyProtocol(warmup=3, repeats=10, noise_cv=1.0)
    evaluator = make_evaluator(supernet, data, run, target, protocol)
    result = run_search(searcher, evaluator, ResultStore(), budget=settings.budget)
    rows = pd.DataFrame(result.metrics, columns=list(problem.metric_keys))
    rows["config"] = [c.to_json() for c in result.configs]
    rows["front"] = False
    rows.loc[list(result.front), "front"] = True
    return result.front_configs, rows


def remeasure(
    modules: dict[str, tuple[torch.nn.Module, HardwareTarget]],
    shape: tuple[int, ...],
    rounds: int,
) -> dict[str, dict[str, float]]:
    """Latency of every module on its target in one session, interleaved in ``rounds`` rounds."""
    protocol = LatencyProtocol(warmup=3, repeats=5, noise_cv=0.25)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in modules}
    with contextlib.ExitStack() as stack:
        runs: dict[str, Callable[[], object]] = {
            name: stack.enter_context(deployed(module, shape, target, protocol=protocol))
            for name, (module, target) in modules.items()
        }
        for _ in range(rounds):
            for name, run in runs.items():
                samples[name].append(time_runs(run, protocol))
    out = {}
    for name, parts in samples.items():
        result = summarize_latency(
            np.concatenate(parts), target=modules[name][1].name, protocol=protocol, threads=1
        )
        out[name] = {"latency_ms": result.median_ms, "latency_cv": result.cv}
    return out


def onnx_bytes(
    module: torch.nn.Module, target: HardwareTarget, calib: Sequence[np.ndarray]
) -> int:
    """Size of the ONNX file ``target`` runs (the deployed weights as stored)."""
    bits = layer_bits(module) if target.precision == "mixed" else None
    with tempfile.TemporaryDirectory(prefix="simq-") as tmp:
        shape = (1, *calib[0].shape[1:])
        path = onnx_for_target(deployable(module), shape, target, tmp, calib, bits)
        return path.stat().st_size


def describe(run: Run, config: SubnetConfig) -> str:
    """``e96 d4 h4,4,4,4 r3,3,3,3 b8,8,8,8`` (embed, depth, heads, MLP ratio, bits per block)."""
    depth = int(config["depth"])
    per = {
        k: ",".join(f"{config[f'l{i}.{k}']:g}" for i in range(depth))
        for k in ("heads", "mlp_ratio", "bits")
    }
    return f"e{config['embed_dim']} d{depth} h{per['heads']} r{per['mlp_ratio']} b{per['bits']}"


KERNEL_PATTERNS: dict[str, tuple[int, ...]] = {
    "all 4": (4, 4, 4, 4),
    "all 8": (8, 8, 8, 8),
    "all 32": (32, 32, 32, 32),
    "4,8,32,32": (4, 8, 32, 32),
}


def kernel_table(settings: Settings, run: Run, supernet: Supernet) -> pd.DataFrame:
    """The largest architecture's bit patterns on ``mixed`` vs the uniform precisions."""
    largest = run.space.largest()
    rows = []
    for batch in (1, settings.batch):
        mixed, int8 = targets(batch)
        uniform = {
            p: HardwareTarget(
                f"ort_{p}_b{batch}", runtime="onnxruntime", precision=p, batch_size=batch
            )
            for p in ("fp32", "w4")
        }
        modules: dict[str, tuple[torch.nn.Module, HardwareTarget]] = {}
        for label, bits in KERNEL_PATTERNS.items():
            config = largest.replace(**{f"l{i}.bits": b for i, b in enumerate(bits)})
            modules[f"mixed {label}"] = (supernet.export(run.space.validate(config)), mixed)
        full = supernet.export(largest).eval()
        modules["int8 (whole graph)"] = (full, int8)
        modules["fp32"] = (full, uniform["fp32"])
        modules["w4 (every linear)"] = (full, uniform["w4"])
        latency = remeasure(modules, input_shape(run, mixed), settings.rounds)
        for name, values in latency.items():
            rows.append({"batch": batch, "model": name, **values})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    settings = parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    run = load_run(settings.run)
    if settings.kernels:
        supernet, _ = load_supernet(run.checkpoint, space=run.space)
        frame = kernel_table(settings, run, supernet.eval())
        print(markdown(frame, digits=3))
        settings.out.parent.mkdir(parents=True, exist_ok=True)
        settings.out.write_text(json.dumps(frame.to_dict(orient="records"), indent=1))
        return {"kernels": frame.to_dict(orient="records")}
    data = load_fashion(int(run.spec["seed"]), split_sizes(run.spec))
    supernet, _ = load_supernet(run.checkpoint, space=run.space)
    supernet.eval()
    mixed, int8 = targets(settings.batch)
    print(f"searching {settings.budget} configs on {mixed.name} ...", file=sys.stderr)
    front, rows = search(settings, supernet, data, run, mixed)
    searched_s = time.time() - started
    baseline = all_bits(run, run.space.largest(), BASELINE_BITS)
    shape = input_shape(run, mixed)
    modules = {"baseline@int8": (supernet.export(baseline).eval(), int8)}
    modules["baseline@mixed"] = (modules["baseline@int8"][0], mixed)
    for i, config in enumerate(front):
        modules[f"front_{i:02d}"] = (supernet.export(config).eval(), mixed)
    print(f"re-measuring {len(modules)} models ...", file=sys.stderr)
    latency = remeasure(modules, shape, settings.rounds)
    calib_x, _ = data.tensors("calib")
    test_x, test_y = data.tensors("test")
    calib_np = [c.numpy() for c in calib_x[: run.calib_images].split(64)][:4]
    table = []
    for name, (module, target) in modules.items():
        config = baseline if name.startswith("baseline") else front[int(name.split("_")[1])]
        table.append(
            {
                "name": name,
                "target": target.name,
                "subnet": describe(run, config),
                "top1_test": 100.0
                * evaluate_accuracy(
                    supernet, config, data, split="test", n_calib=run.calib_images
                ),
                "top1_test_deployed": 100.0
                * deployed_top1(
                    module, target, calib_x=calib_x[: run.calib_images], x=test_x, y=test_y
                ),
                "model_size_bytes": float(compute_cost(run.space, config).model_size_bytes),
                "onnx_bytes": onnx_bytes(module, target, calib_np),
                **latency[name],
                "config": config.to_json(),
            }
        )
    frame = pd.DataFrame(table)
    report = summarize(frame, n_test=len(test_y))
    report.update(
        {
            "settings": {k: str(v) for k, v in vars(settings).items()},
            "search_rows": rows.to_dict(orient="records"),
            "table": frame.to_dict(orient="records"),
            "n_val": len(data.tensors("val")[1]),
            "search_seconds": searched_s,
            "seconds": time.time() - started,
        }
    )
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report, indent=1))
    print_report(frame, report)
    return report


def summarize(frame: pd.DataFrame, *, n_test: int) -> dict[str, Any]:
    """Ratios of the front members at equal or better test top-1 than the int8 baseline."""
    base = frame.set_index("name").loc["baseline@int8"]
    front = frame[frame["name"].str.startswith("front")].copy()
    out: dict[str, Any] = {"n_test": n_test, "n_front": len(front)}
    for column in ("top1_test", "top1_test_deployed"):
        ok = front[front[column] >= base[column]]
        key = "supernet" if column == "top1_test" else "deployed"
        out[key] = {
            "baseline_top1": float(base[column]),
            "n_equal_or_better": len(ok),
            "best_latency_ratio": float(base["latency_ms"] / ok["latency_ms"].min())
            if len(ok)
            else None,
            "best_size_ratio": float(base["model_size_bytes"] / ok["model_size_bytes"].min())
            if len(ok)
            else None,
            "best_onnx_ratio": float(base["onnx_bytes"] / ok["onnx_bytes"].min())
            if len(ok)
            else None,
        }
    return out


def print_report(frame: pd.DataFrame, report: dict[str, Any]) -> None:
    base = frame.set_index("name").loc["baseline@int8"]
    cols = ["name", "subnet", "top1_test", "top1_test_deployed", "latency_ms", "latency_cv"]
    cols += ["model_size_bytes", "onnx_bytes"]
    view = frame[cols].copy()
    view["latency ×"] = base["latency_ms"] / view["latency_ms"]
    view["size ×"] = base["model_size_bytes"] / view["model_size_bytes"]
    print(markdown(view, digits=3))
    print(json.dumps({k: report[k] for k in ("n_test", "n_front", "supernet", "deployed")}))


if __name__ == "__main__":
    main()
