"""fp32 vs int8 vs 4-bit weight-only latency of transformer-like static modules on this CPU.

Run: ``nice -n 10 python -m benchmarks.linear_kernels`` (from the repository root; about 4-5
minutes on 2 cores). Two ViT-shaped sizes at 64 tokens (compute-bound) and one at a single
token per image (weight reads dominate, where 4-bit weights can pay off). ``--vit`` adds the
largest and a middle subnet of every registered ``vit_*`` search space
(``Supernet(space).export(config)``, random weights: latency does not depend on them).

Every model is compiled once per target (``nas.measure.latency.deployed``: the same compile step
as ``measure_latency``: torch fp32 eager, torch int8 dynamic ``nn.Linear``, ORT fp32, ORT static
QDQ int8, ORT ``MatMulNBits`` w4). The targets of one model are then timed *interleaved*
(``--rounds`` rounds of ``--runs`` timed runs each, after ``--warmup`` untimed runs), so load
from other processes on this shared machine hits all of them alike; the statistic is the median
of all timed runs, 1 thread. Ratios are fp32 / low precision (> 1: faster than fp32).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nas.deploy.weight_only import quantize_onnx_w4
from nas.measure.latency import (
    LatencyProtocol,
    NoisyMeasurementWarning,
    deployable,
    deployed,
    summarize_latency,
)
from nas.measure.targets import HardwareTarget, default_registry

TARGETS = ("cpu_fp32", "cpu_int8", "ort_fp32", "ort_int8", "ort_w4")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        return self.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        hidden = mlp_ratio * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerLike(nn.Module):
    """A ViT-shaped static module: linear patch embedding, pre-norm blocks, mean pooling."""

    def __init__(
        self, dim: int, depth: int, heads: int, *, mlp_ratio: int = 4, patch: int = 4
    ) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, 1000)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        tokens = self.embed(x.reshape(b, (h // p) * (w // p), c * p * p))
        return self.classifier(self.norm(self.blocks(tokens)).mean(dim=1))


def _timed(run: Callable[[], object], runs: int) -> list[int]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - start)
    return samples


def interleaved_medians(
    module: nn.Module,
    shape: tuple[int, ...],
    targets: list[HardwareTarget],
    *,
    warmup: int,
    rounds: int,
    runs: int,
) -> dict[str, float]:
    """Median ms per target, the targets' timed runs interleaved round by round."""
    protocol = LatencyProtocol(warmup=warmup, repeats=rounds * runs, noise_cv=1.0)
    with contextlib.ExitStack() as stack:
        compiled = {
            t.name: stack.enter_context(deployed(module, shape, t, protocol=protocol))
            for t in targets
        }
        for run in compiled.values():
            _timed(run, warmup)
        samples: dict[str, list[int]] = {name: [] for name in compiled}
        for _ in range(rounds):
            for name, run in compiled.items():
                samples[name] += _timed(run, runs)
    out = {}
    for t in targets:
        res = summarize_latency(samples[t.name], target=t.name, protocol=protocol, threads=1)
        out[t.name] = res.median_ms
    return out


def onnx_sizes(module: nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    """File size (MB) of the fp32 export and of its w4 version."""
    from nas.deploy.onnx_export import export_module_onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_module_onnx(deployable(module), shape, Path(tmp) / "m.onnx")
        w4 = quantize_onnx_w4(fp32, Path(tmp) / "m4.onnx")
        return {"fp32": fp32.stat().st_size / 1e6, "w4": w4.stat().st_size / 1e6}


# (block_size, accuracy_level); the first is quantize_onnx_w4's default
W4_SETTINGS = ((128, 4), (32, 4), (128, 0))


def w4_settings(
    module: nn.Module, shape: tuple[int, ...], *, warmup: int, rounds: int, runs: int
) -> dict[tuple[int, int], float]:
    """Median ms of ORT w4 graphs quantized with each of :data:`W4_SETTINGS`, interleaved."""
    from nas.deploy.onnx_export import export_module_onnx
    from nas.measure.latency import _ort_session

    x = {"input": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_module_onnx(deployable(module), shape, Path(tmp) / "m.onnx")
        runs_by = {}
        for block, level in W4_SETTINGS:
            path = quantize_onnx_w4(
                fp32, Path(tmp) / f"m{block}_{level}.onnx", block_size=block, accuracy_level=level
            )
            session = _ort_session(path, 1)
            runs_by[(block, level)] = lambda s=session: s.run(None, x)  # type: ignore[attr-defined]
        for run in runs_by.values():
            _timed(run, warmup)
        samples: dict[tuple[int, int], list[int]] = {k: [] for k in runs_by}
        for _ in range(rounds):
            for key, run in runs_by.items():
                samples[key] += _timed(run, runs)
    return {k: float(np.median(v)) / 1e6 for k, v in samples.items()}


def _row(name: str, params_m: float, batch: int, ms: dict[str, float]) -> str:
    def ratio(a: str, b: str) -> str:
        return f"{ms[a] / ms[b]:.2f}×"

    cells = " | ".join(f"{ms[t]:.2f}" for t in TARGETS)
    return (
        f"| {name} | {params_m:.3g} | {batch} | {cells} | {ratio('cpu_fp32', 'cpu_int8')} | "
        f"{ratio('ort_fp32', 'ort_int8')} | {ratio('ort_fp32', 'ort_w4')} |"
    )


def _middle(space) -> object:
    """Each dimension's middle choice (a registered space's mid-size subnet)."""
    values = {}
    for name in space.names:
        dim = space.dim(name)
        allowed = dim.allowed()
        values[name] = allowed[len(allowed) // 2] if isinstance(allowed, list) else None
    largest = space.largest()
    return space.validate(
        {n: (v if v is not None else largest[n]) for n, v in values.items()}  # type: ignore[index]
    )


def vit_models() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Largest and middle subnet of each registered ``vit_*`` space, exported static modules."""
    import search_spaces
    from nas.supernets.base import Supernet

    models = []
    for name in search_spaces.names():
        if not name.startswith("vit_"):
            continue
        space = search_spaces.get(name)
        torch.manual_seed(0)
        supernet = Supernet(space).eval()
        arch = space.metadata["arch"]
        shape = (arch.in_channels, arch.resolution, arch.resolution)
        for label, config in (("largest", space.largest()), ("middle", _middle(space))):
            print(f"# {name} {label}: {config.to_dict()}")
            models.append((f"{name} {label}", supernet.export(config).eval(), shape))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vit", action="store_true", help="add the vit_* spaces' subnets")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # tracer and quantizer advisories; noise is in the table
    warnings.simplefilter("ignore", NoisyMeasurementWarning)
    torch.set_num_threads(1)
    registry = default_registry()
    targets = [registry.get(n) for n in TARGETS]
    import onnxruntime

    torch.manual_seed(0)
    models: list[tuple[str, nn.Module, tuple[int, ...]]] = [
        ("transformer d192×6 (64 tokens)", TransformerLike(192, 6, 3).eval(), (3, 32, 32)),
        ("transformer d384×6 (64 tokens)", TransformerLike(384, 6, 6).eval(), (3, 32, 32)),
        # one 32x32 patch: one token per image, so reading the weights dominates (memory-bound)
        (
            "transformer d768×4 (1 token)",
            TransformerLike(768, 4, 12, patch=32).eval(),
            (3, 32, 32),
        ),
    ]
    if args.vit:
        models += vit_models()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# load average at start {load}; 1 thread, warmup {args.warmup}, "
        f"{args.rounds} interleaved rounds × "
        f"{args.runs} runs, median ms; torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}"
    )
    print()
    header = " | ".join(TARGETS)
    print(
        f"| model | params (M) | batch | {header} | torch fp32/int8 | ORT fp32/int8 | "
        "ORT fp32/w4 |"
    )
    print("|---|---|---|" + "---|" * (len(TARGETS) + 3))
    sizes = []
    for name, module, chw in models:
        params_m = sum(p.numel() for p in module.parameters()) / 1e6
        for batch in args.batches:
            ms = interleaved_medians(
                module,
                (batch, *chw),
                targets,
                warmup=args.warmup,
                rounds=args.rounds,
                runs=args.runs,
            )
            print(_row(name, params_m, batch, ms), flush=True)
        sizes.append((name, onnx_sizes(module, (1, *chw))))
    print()
    name, module, chw = models[1]
    print(f"## ORT w4 kernel settings, {name}, batch 1 (median ms)")
    print("| block size | accuracy level | median ms |")
    print("|---|---|---|")
    settings = w4_settings(
        module, (1, *chw), warmup=args.warmup, rounds=args.rounds, runs=args.runs
    )
    for (block, level), ms in settings.items():
        print(f"| {block} | {level} | {ms:.2f} |")
    print()
    print(f"# load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| model | ONNX fp32 (MB) | ONNX w4 (MB) | fp32 / w4 |")
    print("|---|---|---|---|")
    for name, size in sizes:
        fp32, w4 = size["fp32"], size["w4"]
        print(f"| {name} | {fp32:.2f} | {w4:.2f} | {fp32 / w4:.2f}× |")


if __name__ == "__main__":
    main()
