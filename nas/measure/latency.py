"""Latency of exported static modules on a :class:`~nas.measure.targets.HardwareTarget`.

Protocol (also in ``benchmarks/README_measure.md``):

1. The module is the *exported static subnet* (never the elastic supernet), in eval mode, with
   its fake-quantization nodes removed: a float runtime would not execute them in deployment,
   and int8 targets get real integer kernels instead (see :mod:`nas.deploy.int8`).
2. It is compiled for the target: torch eager under ``torch.inference_mode()``; torch int8
   on the x86 backend, FX static quantization for convolutional networks and dynamic int8
   ``nn.Linear`` for linear-dominated ones (:func:`nas.deploy.int8.torch_int8_scheme`); ONNX
   Runtime (CPU provider, full graph optimisation) on the exported ONNX graph, int8 as a static
   QDQ model, ``w4`` with every linear layer as a 4-bit ``MatMulNBits``, ``mixed`` with each
   layer at its block's bits, read before fake quantization is removed
   (:mod:`nas.deploy.mixed_precision`; all in :mod:`nas.measure.onnx_deploy`). A target whose
   kernels the installed runtime lacks is refused before anything is compiled.
3. Threads are pinned for the whole measurement: ``torch.set_num_threads(target.threads)``
   (restored afterwards) or ``intra_op_num_threads=target.threads, inter_op_num_threads=1``.
4. ``warmup`` untimed runs, then ``repeats`` runs each timed with ``time.perf_counter_ns`` on a
   fixed seeded input of shape ``(batch, C, R, R)``.
5. Statistic: the median; spread as the inter-quartile range and the coefficient of variation
   (std / mean). When ``cv > noise_cv`` the result is flagged ``noisy`` and a
   :class:`NoisyMeasurementWarning` is issued.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.deploy.int8 import quantize_torch_int8, quantized_engine
from nas.deploy.mixed_precision import layer_bits
from nas.elastic.quantization import FakeQuantize
from nas.errors import ConfigError
from nas.measure.targets import HardwareTarget


class NoisyMeasurementWarning(RuntimeWarning):
    """A latency measurement's coefficient of variation exceeded the protocol's threshold.

    ``cv`` and ``limit`` travel with the warning so a caller can tally a whole stage's noise
    into one line (:mod:`nas.pipeline.console`).
    """

    def __init__(self, message: str, *, cv: float = float("nan"), limit: float = 0.1) -> None:
        super().__init__(message)
        self.cv = cv
        self.limit = limit


@dataclass(frozen=True)
class LatencyProtocol:
    """How a latency is measured: untimed warm-up runs, timed repeats, noise threshold.

    Args:
        warmup: Untimed runs before timing (caches, allocator, thread pools, JIT paths).
        repeats: Timed runs; the statistic is their median.
        noise_cv: A result whose coefficient of variation exceeds this is flagged ``noisy``.
        calibration_batches: Seeded random batches used to calibrate int8 ranges.
    """

    warmup: int = 5
    repeats: int = 20
    noise_cv: float = 0.10
    calibration_batches: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"latency.warmup={self.warmup!r} must be an integer >= 0")
        for key in ("repeats", "calibration_batches"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"latency.{key}={value!r} must be a positive integer")
        if not self.noise_cv > 0:
            raise ConfigError(f"latency.noise_cv={self.noise_cv!r} must be > 0")


@dataclass(frozen=True)
class LatencyResult:
    """Summary of one latency measurement (times in milliseconds)."""

    target: str
    median_ms: float
    iqr_ms: float
    cv: float
    mean_ms: float
    min_ms: float
    repeats: int
    warmup: int
    threads: int
    noisy: bool

    def metrics(self) -> dict[str, float]:
        """Metric names for an :class:`~nas.results.Evaluation`."""
        return {
            "latency_ms": self.median_ms,
            "latency_iqr_ms": self.iqr_ms,
            "latency_cv": self.cv,
            "latency_noisy": float(self.noisy),
        }


def summarize_latency(
    samples_ns: Sequence[int] | np.ndarray,
    *,
    target: str,
    protocol: LatencyProtocol,
    threads: int,
) -> LatencyResult:
    """Median, IQR and CV of timed runs; warns with :class:`NoisyMeasurementWarning` if noisy."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no timed runs to summarize")
    q1, median, q3 = np.percentile(ms, [25, 50, 75])
    mean = float(ms.mean())
    cv = float(ms.std() / mean) if mean > 0 else 0.0
    noisy = cv > protocol.noise_cv
    if noisy:
        warnings.warn(
            NoisyMeasurementWarning(
                f"latency on {target!r} is noisy: cv={cv:.3f} > noise_cv={protocol.noise_cv} "
                f"(median {median:.3f} ms over {ms.size} runs); other load on this machine?",
                cv=cv,
                limit=protocol.noise_cv,
            ),
            stacklevel=2,
        )
    return LatencyResult(
        target=target,
        median_ms=float(median),
        iqr_ms=float(q3 - q1),
        cv=cv,
        mean_ms=mean,
        min_ms=float(ms.min()),
        repeats=int(ms.size),
        warmup=protocol.warmup,
        threads=threads,
        noisy=bool(noisy),
    )


def deployable(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` without its fake-quantization modules."""
    model = copy.deepcopy(module).eval()

    def strip(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, FakeQuantize):
                setattr(parent, name, nn.Identity())
            else:
                strip(child)

    strip(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ort_session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def deployed(
    module: nn.Module,
    input_shape: tuple[int, ...],
    target: HardwareTarget,
    *,
    protocol: LatencyProtocol | None = None,
    seed: int = 0,
) -> Iterator[Callable[[], object]]:
    """Compile ``module`` for ``target`` and yield a zero-argument callable running one inference.

    Threads (and torch's quantized engine) are pinned while the context is open and restored on
    exit. The input is a fixed seeded standard-normal batch of ``input_shape``.
    """
    protocol = protocol or LatencyProtocol()
    target.require_kernels()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape, dtype=np.float32)
    calibration = [
        rng.standard_normal(input_shape, dtype=np.float32)
        for _ in range(protocol.calibration_batches)
    ]
    bits = layer_bits(module) if target.precision == "mixed" else None
    model = deployable(module)
    if target.runtime == "torch":
        xt = torch.from_numpy(x)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_torch_threads(target.threads))
            if target.precision == "int8":
                model = quantize_torch_int8(model, [torch.from_numpy(c) for c in calibration])
                stack.enter_context(quantized_engine())
            stack.enter_context(torch.inference_mode())
            yield lambda: model(xt)
        return
    from nas.measure.onnx_deploy import onnx_for_target

    with tempfile.TemporaryDirectory(prefix="nas-latency-") as tmp:
        path = onnx_for_target(model, tuple(input_shape), target, tmp, calibration, bits)
        session = _ort_session(path, target.threads)
        feeds = {"input": x}
        yield lambda: session.run(None, feeds)  # type: ignore[attr-defined]


def time_runs(run: Callable[[], object], protocol: LatencyProtocol) -> np.ndarray:
    """Wall-clock nanoseconds of ``protocol.repeats`` calls after ``protocol.warmup`` calls."""
    for _ in range(protocol.warmup):
        run()
    samples = np.empty(protocol.repeats, dtype=np.int64)
    for i in range(protocol.repeats):
        start = time.perf_counter_ns()
        run()
        samples[i] = time.perf_counter_ns() - start
    return samples


def measure_latency(
    module: nn.Module,
    input_shape: tuple[int, ...],
    target: HardwareTarget,
    *,
    protocol: LatencyProtocol | None = None,
    seed: int = 0,
) -> LatencyResult:
    """Latency of a static module on ``target`` following the module docstring's protocol.

    Example:
        >>> import search_spaces
        >>> from nas.supernets.base import Supernet
        >>> from nas.measure.targets import default_registry
        >>> space = search_spaces.get("tiny_cnn")
        >>> subnet = Supernet(space).export(space.smallest())
        >>> target = default_registry().get("cpu_fp32")
        >>> res = measure_latency(subnet, (1, 1, 8, 8), target,
        ...                       protocol=LatencyProtocol(warmup=1, repeats=3, noise_cv=10.0))
        >>> res.median_ms > 0
        True
    """
    protocol = protocol or LatencyProtocol()
    with deployed(module, input_shape, target, protocol=protocol, seed=seed) as run:
        samples = time_runs(run, protocol)
    return summarize_latency(
        samples, target=target.name, protocol=protocol, threads=target.threads
    )


__all__ = [
    "LatencyProtocol",
    "LatencyResult",
    "NoisyMeasurementWarning",
    "deployable",
    "deployed",
    "measure_latency",
    "summarize_latency",
    "time_runs",
]
