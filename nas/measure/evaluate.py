"""Measure configs on a target and record them: export → latency + cost → ResultStore.

Configs already in the store for the target are skipped (resume by replay), and each new
evaluation is appended (fsync'ed) as soon as it is measured, so a killed run loses nothing
finished. Latencies of one target are measured one at a time: concurrent measurements on one
machine disturb each other. With an executor, pass one whose placement keeps latency tasks
node-exclusive (``nas.execution.placement.NodeExclusiveExecutor``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nas.data.resolution import config_resolution
from nas.measure.cost import compute_cost
from nas.measure.latency import LatencyProtocol, deployable, measure_latency
from nas.measure.targets import HardwareTarget
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig
from nas.supernets import arch_of
from nas.supernets.mbconv.static import MBConv

if TYPE_CHECKING:
    from nas.execution.base import Executor
    from nas.supernets.base import Supernet

FLOAT_BYTES = 4


def peak_activation_bytes(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Largest fp32 activation footprint live at once, for sequential execution.

    For every leaf layer: its input plus its output, plus the block input kept alive for the
    shortcut when the layer sits inside a residual :class:`~nas.supernets.mbconv.static.MBConv`.
    Buffers are
    assumed freed after their last use (what an inference runtime's memory planner does).
    """
    peak = 0
    residual_input: list[int] = []
    handles = []

    def numel(t: object) -> int:
        if isinstance(t, Tensor):
            return t.numel()
        if isinstance(t, tuple | list):
            return sum(numel(x) for x in t)
        return 0

    def leaf_hook(_: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal peak
        live = numel(inputs) + numel(output) + sum(residual_input)
        peak = max(peak, live)

    def block_pre(mod: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        residual_input.append(numel(inputs) if getattr(mod, "residual", False) else 0)

    def block_post(*_: object) -> None:
        residual_input.pop()

    model = deployable(module)
    for mod in model.modules():
        if isinstance(mod, MBConv):
            handles.append(mod.register_forward_pre_hook(block_pre))
            handles.append(mod.register_forward_hook(block_post))
        elif not list(mod.children()):
            handles.append(mod.register_forward_hook(leaf_hook))
    try:
        with torch.inference_mode():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return peak * FLOAT_BYTES


def measure_config(
    supernet: Supernet,
    config: SubnetConfig,
    target: HardwareTarget,
    *,
    protocol: LatencyProtocol | None = None,
    seed: int = 0,
) -> Evaluation:
    """Export ``config``, measure its latency on ``target`` and compute its cost metrics.

    Metrics: ``latency_ms`` (median), ``latency_iqr_ms``, ``latency_cv``, ``latency_noisy``,
    ``params_m``, ``macs_m``, ``model_size_bytes`` (bit-aware, from the config's bits),
    ``peak_activation_bytes`` and ``resolution``.
    """
    space = supernet.space
    arch = arch_of(space)
    config = space.validate(config)
    shape = target.input_shape(arch.in_channels, config_resolution(space, config, arch.resolution))
    subnet = supernet.export(config).eval()
    latency = measure_latency(subnet, shape, target, protocol=protocol, seed=seed)
    metrics = latency.metrics()
    metrics.update(compute_cost(space, config, resolution=shape[-1]).metrics())
    metrics["peak_activation_bytes"] = float(peak_activation_bytes(subnet, shape))
    metrics["resolution"] = float(shape[-1])
    return Evaluation(config=config, target=target.name, metrics=metrics, source="measured")


def measure_configs(
    supernet: Supernet,
    configs: Sequence[SubnetConfig],
    target: HardwareTarget,
    store: ResultStore,
    *,
    protocol: LatencyProtocol | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Evaluation]:
    """Measured evaluations of ``configs`` on ``target``, in input order, recorded in ``store``.

    Configs with a measured record for ``target`` in the store are not measured again. Without
    an executor, configs are measured here one after another and each record is appended as
    soon as it exists; with one, each record is appended as its call finishes. ``progress``
    (e.g. a tqdm bar's ``update``) is called with 1 per finished measurement.
    """
    space = supernet.space
    configs = [space.validate(c) for c in configs]
    todo: dict[str, SubnetConfig] = {}
    for c in configs:
        if store.get(c, target.name) is None:
            todo.setdefault(c.key, c)
    measure = functools.partial(
        measure_config, supernet, target=target, protocol=protocol, seed=seed
    )

    def record(_: int, evaluation: Evaluation) -> None:
        store.append(evaluation)
        if progress is not None:
            progress(1)

    if executor is None:
        for i, c in enumerate(todo.values()):
            record(i, measure(c))
    else:
        executor.map(measure, list(todo.values()), on_result=record)
    results = [store.get(c, target.name) for c in configs]
    return [r for r in results if r is not None]


__all__ = ["measure_config", "measure_configs", "peak_activation_bytes"]
