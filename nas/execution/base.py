"""The one parallelism seam: ``Executor.map(fn, items) -> list`` (results in input order)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


OnResult = Callable[[int, R], None]


class Executor(Protocol):
    """Maps a function over items; implementations differ only in where the calls run."""

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        on_result: OnResult[R] | None = None,
    ) -> list[R]:
        """Apply ``fn`` to every item and return the results in input order.

        ``on_result(index, result)`` is called in this process as each call finishes (in
        completion order), so callers can record finished work before the whole map returns.
        """
        ...
