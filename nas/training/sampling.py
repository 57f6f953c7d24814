"""Which subnets a training step trains: the sandwich rule under a progressive-shrinking schedule.

Random subnets are drawn from a generator seeded by ``(seed, global step, k)``, so every Ray
Train worker samples the same subnets at the same step without communicating, and a resumed run
samples exactly what the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.training.config import PHASES, TrainConfig

# Which dimensions each phase makes elastic, by the suffix of the dimension name.
_KIND_OF_SUFFIX: dict[str, str] = {
    "kernel": "kernel",
    "depth": "depth",
    "width": "width",
    "expand": "width",
    "bits": "bits",
    "embed_dim": "width",
    "heads": "width",
    "mlp_ratio": "width",
}


def dimension_kind(name: str) -> str | None:
    """``kernel``/``depth``/``width``/``bits`` for a dimension name, ``None`` if unknown."""
    return _KIND_OF_SUFFIX.get(name.rsplit(".", 1)[-1])


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Elastic dimension kinds per epoch (OFA's progressive shrinking as one declaration)."""

    phases: tuple[str, ...] = ()
    phase_epochs: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: TrainConfig) -> ProgressiveSchedule:
        return cls(config.phases, config.phase_epochs)

    def phase(self, epoch: int) -> str:
        """The phase active at ``epoch`` (``full`` once every declared phase is over)."""
        end = 0
        for name, n in zip(self.phases, self.phase_epochs, strict=True):
            end += n
            if epoch < end:
                return name
        return "full"

    def elastic_kinds(self, epoch: int) -> frozenset[str] | None:
        """Kinds that may shrink at ``epoch``; ``None`` means every dimension is elastic."""
        phase = self.phase(epoch)
        if phase == "full":
            return None
        return frozenset(PHASES[1 : PHASES.index(phase) + 1])


def restrict(
    space: SearchSpace, config: SubnetConfig, elastic: frozenset[str] | None
) -> SubnetConfig:
    """``config`` with every dimension whose kind is not yet elastic set to its largest value."""
    if elastic is None:
        return config
    largest = space.largest()
    values = {
        name: config[name]
        if dimension_kind(name) is None or dimension_kind(name) in elastic
        else largest[name]
        for name in space.names
    }
    return space.validate(values)


def random_subnet(space: SearchSpace, seed: int, step: int, k: int) -> SubnetConfig:
    """The ``k``-th random subnet of global step ``step`` (identical on every worker)."""
    return space.sample(np.random.default_rng([seed, step, k]))


def sandwich_configs(
    space: SearchSpace,
    *,
    seed: int,
    step: int,
    n_random: int,
    elastic: frozenset[str] | None = None,
) -> tuple[SubnetConfig, list[SubnetConfig]]:
    """``(largest, [smallest, random_1, ..., random_n])`` for one step (the sandwich rule)."""
    largest = space.largest()
    students = [restrict(space, space.smallest(), elastic)]
    students += [
        restrict(space, random_subnet(space, seed, step, k), elastic) for k in range(n_random)
    ]
    return largest, students
