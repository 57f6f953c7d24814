"""Registry of supernet families: which shared-weight network a search space's architecture builds.

A family is an architecture description type (torch-free, in ``nas/``), the
:class:`~nas.supernets.base.Supernet` subclass that allocates its shared weights, and the
analytic cost model of its subnets. Training, measurement, predictors, search and export ask the
registry (through ``Supernet(space)`` and :func:`compute_cost`), never a family by name, so a
third family only needs an entry here and passes the conformance suite
(``tests/contracts/test_supernets.py``) that is parametrised over this registry.

Importing this module does not import torch: spec validation resolves architectures with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError

if TYPE_CHECKING:
    from nas.space import SearchSpace
    from nas.subnet import SubnetConfig
    from nas.supernets.base import Supernet
    from nas.supernets.cost_model import Cost


BIT_CHOICES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)  # every family's allowed bits


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class SupernetFamily:
    """One family: import paths of its architecture type, supernet class and cost model.

    Args:
        name: Registry key.
        arch: ``module:Class`` of the torch-free architecture description spaces carry in
            ``metadata["arch"]``.
        supernet: ``module:Class`` of the :class:`~nas.supernets.base.Supernet` subclass.
        cost: ``module:function`` with signature ``(space, config, *, resolution) -> Cost``.
        example_space: A small registered space of this family (the conformance suite's).
        doc: One line for listings.
        reorders: Whether its supernet re-orders weights by importance (``train.reorder``);
            declared here so spec validation can refuse the option without importing torch.
    """

    name: str
    arch: str
    supernet: str
    cost: str
    example_space: str
    doc: str
    reorders: bool = False

    @property
    def arch_type(self) -> type:
        return _load(self.arch)

    @property
    def supernet_class(self) -> type[Supernet]:
        return _load(self.supernet)

    @property
    def cost_function(self) -> Callable[..., Cost]:
        return _load(self.cost)


FAMILIES: dict[str, SupernetFamily] = {
    "mbconv": SupernetFamily(
        name="mbconv",
        arch="nas.supernets.mbconv.arch:MBConvArch",
        supernet="nas.supernets.mbconv.supernet:MBConvSupernet",
        cost="nas.supernets.mbconv.cost:mbconv_cost",
        example_space="tiny_cnn",
        doc="MobileNet-style inverted residual CNN: depth, width, kernel, expand ratio, bits",
    ),
    "vit": SupernetFamily(
        name="vit",
        arch="nas.supernets.vit.arch:ViTArch",
        supernet="nas.supernets.vit.supernet:ViTSupernet",
        cost="nas.supernets.vit.cost:vit_cost",
        example_space="vit_tiny",
        doc="Vision Transformer: depth, embed dim, heads and MLP ratio per layer, bits",
        reorders=True,
    ),
}


def names() -> list[str]:
    """Registered family names."""
    return sorted(FAMILIES)


def family_of(space: SearchSpace) -> SupernetFamily:
    """The family whose architecture type ``space`` was built from.

    Raises:
        ConfigError: the space carries no architecture of a registered family (a table-backed
            space such as NAS-Bench-201 has no supernet).
    """
    arch = space.metadata.get("arch")
    for family in FAMILIES.values():
        if arch is not None and isinstance(arch, family.arch_type):
            return family
    raise ConfigError(
        f"search space {space.name!r} has no supernet architecture; only spaces built from a "
        f"registered supernet family ({', '.join(names())}) can build a Supernet"
    )


def compute_cost(
    space: SearchSpace, config: SubnetConfig, *, resolution: int | None = None
) -> Cost:
    """Analytic params, MACs and bit-aware size of ``config`` by its family's cost model."""
    return family_of(space).cost_function(space, config, resolution=resolution)


def arch_of(space: SearchSpace) -> Any:
    """The architecture a space was built from, of any registered supernet family.

    Every family's architecture has ``in_channels``, ``num_classes`` and ``resolution``.

    Raises:
        ConfigError: the space has no supernet (table-backed spaces).
    """
    family_of(space)
    return space.metadata["arch"]


__all__ = [
    "BIT_CHOICES",
    "FAMILIES",
    "SupernetFamily",
    "arch_of",
    "compute_cost",
    "family_of",
    "names",
]
