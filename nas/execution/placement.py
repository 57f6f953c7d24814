"""Placement on a Ray cluster: resource checks before work, node-exclusive latency tasks.

Two latency measurements on one machine disturb each other (shared cores, caches, memory
bandwidth), and so does any other work there. :class:`NodeExclusiveExecutor` therefore runs at
most one task per node at a time, pins it to that node (``NodeAffinitySchedulingStrategy``,
hard) and makes it reserve *all* the node's CPUs, so Ray schedules no other CPU task on the node
while a measurement runs. Different nodes (e.g. a Raspberry Pi started with
``--resources '{"rpi4": 1}'`` and this machine) measure in parallel.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nas.errors import ConfigError
from nas.execution.ray_auth import (
    check_cluster_access,
    is_cluster_address,
    prepare_local_instance,
)

if TYPE_CHECKING:
    from nas.measure.targets import HardwareTarget

T = TypeVar("T")
R = TypeVar("R")


def ray_address(address: str | None) -> str:
    """The address to pass to ``ray.init``: ``None`` means a fresh local instance.

    Without this, ``ray.init()`` would join whatever ``ray start`` cluster runs on the machine.
    Use ``"auto"`` to join the machine's cluster (what submitted Ray jobs do).
    """
    return address or "local"


def ensure_ray(address: str | None = None, *, log_to_driver: bool = False) -> None:
    """Connect to (or start) Ray unless it is already initialised.

    A cluster named by ``host:port`` is probed first, so a missing or wrong authentication token
    is one :class:`ConfigError` line rather than 20 s of Ray retries and a traceback.
    """
    if not ray.is_initialized():
        target = ray_address(address)
        if is_cluster_address(target):
            check_cluster_access(target)
        elif target == "local":
            _say(prepare_local_instance())
        ray.init(address=target, include_dashboard=False, log_to_driver=log_to_driver)


def _say(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)


@contextlib.contextmanager
def local_ray(*, num_cpus: int, resources: Mapping[str, float] | None = None) -> Iterator[None]:
    """A local Ray instance with ``num_cpus`` CPUs for the duration of a block (benchmarks)."""
    _say(prepare_local_instance())
    ray.init(
        num_cpus=num_cpus,
        resources=dict(resources or {}),
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


def check_resources(required: Mapping[str, float]) -> None:
    """Raise :class:`ConfigError` unless some alive node offers every resource in ``required``.

    Called before any task is submitted: Ray would otherwise queue an infeasible task forever.
    """
    if not required:
        return
    available = ray.cluster_resources()
    custom = sorted(
        k
        for k in available
        if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")
    )
    for key, amount in required.items():
        if available.get(key, 0.0) < amount:
            raise ConfigError(
                f"resource={key!r} (amount {amount}) is not available in the Ray cluster; "
                f"custom resources present: {custom}. Start the target machine's node with "
                f"`ray start --address=<head> --resources '{{\"{key}\": 1}}'`"
            )
    if not nodes_with(required):
        raise ConfigError(f"no single alive Ray node offers all of {dict(required)}")


def nodes_with(required: Mapping[str, float]) -> list[dict[str, object]]:
    """Alive nodes that offer every resource in ``required`` (and at least one CPU)."""
    found = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        if not node.get("Alive") or resources.get("CPU", 0.0) < 1:
            continue
        if all(resources.get(k, 0.0) >= v for k, v in required.items()):
            found.append(node)
    return sorted(found, key=lambda n: str(n["NodeID"]))


class NodeExclusiveExecutor:
    """``map(fn, items)`` with at most one task per node at a time, holding all its CPUs.

    Results come back in input order, like :class:`~nas.execution.local.LocalExecutor`.

    Args:
        resources: Custom node resources a node must offer (``{"rpi4": 1}``); empty: any node.
        address: Ray address to connect to when Ray is not initialised (``None``: local).
    """

    def __init__(
        self, *, resources: Mapping[str, float] | None = None, address: str | None = None
    ) -> None:
        self.resources = dict(resources or {})
        self.address = address

    @classmethod
    def for_target(
        cls, target: HardwareTarget, *, address: str | None = None
    ) -> NodeExclusiveExecutor:
        """The executor that measures latency on ``target``'s machines."""
        return cls(resources=target.ray_resources, address=address)

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        ensure_ray(self.address)
        check_resources(self.resources)
        if not items:
            return []
        nodes = nodes_with(self.resources)
        fn_ref = ray.put(fn)
        remotes = {
            # Ray's stubs type resources as a dict only and scheduling_strategy without the
            # node-affinity strategy, both of which ray.remote takes
            str(n["NodeID"]): ray.remote(  # type: ignore[call-overload]
                num_cpus=float(n["Resources"]["CPU"]),  # type: ignore[index]
                resources=self.resources or None,
                scheduling_strategy=NodeAffinitySchedulingStrategy(str(n["NodeID"]), soft=False),
            )(_call)
            for n in nodes
        }
        free = list(remotes)
        results: list[object] = [None] * len(items)
        pending: dict[ray.ObjectRef, tuple[int, str]] = {}
        next_item = 0
        while next_item < len(items) or pending:
            while free and next_item < len(items):
                node = free.pop(0)
                ref = remotes[node].remote(fn_ref, items[next_item])
                pending[ref] = (next_item, node)
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            index, node = pending.pop(done[0])
            results[index] = ray.get(done[0])
            free.append(node)
            if on_result is not None:
                on_result(index, results[index])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


__all__ = [
    "NodeExclusiveExecutor",
    "check_resources",
    "ensure_ray",
    "local_ray",
    "nodes_with",
    "ray_address",
]
