"""LocalExecutor: sequential map in this process; the reference every other executor must equal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor:
    """``[fn(x) for x in items]``."""

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        results = []
        for i, x in enumerate(items):
            results.append(fn(x))
            if on_result is not None:
                on_result(i, results[-1])
        return results
