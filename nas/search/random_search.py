"""RandomSearcher: uniform sampling of distinct configs, the baseline every searcher must beat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas.errors import ConfigError
from nas.search.objectives import SearchProblem
from nas.subnet import SubnetConfig

_ENUMERABLE = 10_000_000


class RandomSearcher:
    """Asks distinct configs uniformly at random (without replacement over canonical configs).

    Small spaces (up to ten million encodings) are drawn by ``Generator.choice`` without
    replacement; larger ones by rejection of configs already asked.

    Example:
        >>> from nas.space import Choice, SearchSpace
        >>> space = SearchSpace("demo", tuple(Choice(f"x{i}", (0, 1, 2)) for i in range(2)))
        >>> searcher = RandomSearcher(SearchProblem.from_strings(space, ["a:min", "b:min"]),
        ...                           seed=0, batch_size=9)
        >>> len({c.key for c in searcher.ask()})
        9
    """

    def __init__(
        self, problem: SearchProblem, *, seed: int | None = None, batch_size: int = 10
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
        self._problem = problem
        self._space = problem.space
        self._rng = np.random.default_rng(seed)
        self._batch_size = batch_size
        self._seen: set[str] = set()
        self._order: np.ndarray | None = None
        self._cursor = 0
        if self._space.size() <= _ENUMERABLE:
            self._order = self._rng.permutation(self._space.size())
        self._done = False

    @property
    def problem(self) -> SearchProblem:
        return self._problem

    @property
    def done(self) -> bool:
        return self._done

    def _next(self) -> SubnetConfig | None:
        if self._order is not None:
            shape = tuple(int(n) for n in self._space.n_options)
            while self._cursor < len(self._order):
                idx = np.unravel_index(int(self._order[self._cursor]), shape)
                self._cursor += 1
                cfg = self._space.canonical(self._space.decode(np.array(idx)))
                if cfg.key not in self._seen:
                    return cfg
            return None
        for _ in range(10_000):
            cfg = self._space.canonical(self._space.sample(self._rng))
            if cfg.key not in self._seen:
                return cfg
        return None

    def ask(self) -> list[SubnetConfig]:
        out: list[SubnetConfig] = []
        while len(out) < self._batch_size:
            cfg = self._next()
            if cfg is None:
                self._done = True
                break
            self._seen.add(cfg.key)
            out.append(cfg)
        return out

    def tell(
        self,
        configs: Sequence[SubnetConfig],
        objectives: np.ndarray,
        constraints: np.ndarray | None = None,
    ) -> None:
        """Random search ignores results (it still checks them, like every searcher)."""
        self._problem.told_matrices(len(configs), objectives, constraints)
