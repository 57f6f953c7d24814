"""RayExecutor: ``map(fn, items)`` over Ray tasks, same signature and results as LocalExecutor."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import ray

from nas.execution.placement import check_resources, ensure_ray

if TYPE_CHECKING:
    from ray._private.worker import RemoteFunction1

T = TypeVar("T")
R = TypeVar("R")


class RayExecutor:
    """Runs each call as a Ray task; results come back in input order.

    Args:
        num_cpus: CPUs each task reserves (Ray schedules no more tasks than fit).
        resources: Custom node resources each task needs, e.g. ``{"rpi4": 1}`` pins the calls to
            nodes started with that resource (how other machines are reached as Ray nodes).
        address: Ray address to connect to when Ray is not initialised yet (``None``: local).
        max_in_flight: Upper bound on tasks submitted at once (``None``: all).
    """

    def __init__(
        self,
        *,
        num_cpus: float = 1.0,
        resources: Mapping[str, float] | None = None,
        address: str | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.address = address
        self.max_in_flight = max_in_flight

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """Run ``fn`` on every item as Ray tasks; a missing node resource raises before any.

        ``on_result(index, result)`` runs here as each task finishes, in completion order.
        """
        ensure_ray(self.address)
        check_resources(self.resources)
        if not items:
            return []
        # Ray's stubs type resources as a dict only; None is its own default (no custom resources)
        remote_fn: RemoteFunction1[object, list[ray.ObjectRef], T] = ray.remote(
            num_cpus=self.num_cpus,
            resources=self.resources or None,  # type: ignore[arg-type]
        )(_call)
        # Wrapped in a list so Ray passes the reference itself: each worker process then
        # deserializes ``fn`` (often a whole supernet) once, not once per item.
        fn_ref = [ray.put(fn)]
        limit = self.max_in_flight or len(items)
        results: list[object] = [None] * len(items)
        pending: dict[ray.ObjectRef, int] = {}
        next_item = 0
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < limit:
                pending[remote_fn.remote(fn_ref, items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            results[index] = ray.get(done[0])
            if on_result is not None:
                on_result(index, results[index])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]


_FUNCTIONS: OrderedDict[str, Callable[..., object]] = OrderedDict()
_CACHED_FUNCTIONS = 4


def _call(fn_ref: list[ray.ObjectRef], item: T) -> object:
    """Run in a Ray worker: fetch the mapped function once per worker process, then call it."""
    key = fn_ref[0].hex()
    fn = _FUNCTIONS.get(key)
    if fn is None:
        fn = ray.get(fn_ref[0])
        _FUNCTIONS[key] = fn
        if len(_FUNCTIONS) > _CACHED_FUNCTIONS:
            _FUNCTIONS.popitem(last=False)
    return fn(item)


__all__ = ["RayExecutor"]
