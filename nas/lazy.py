"""Package attributes imported on first use (PEP 562), so light commands stay light.

``nas --help``, ``nas validate`` and ``nas status`` must not pay for torch, pymoo or Optuna;
packages that re-export heavy names route them through :func:`lazy_getattr`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a module path) when first used."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


class DeprecatedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of moved modules with their new module and a ``DeprecationWarning``.

    Modules moved to a new path keep their old one for one release, so code written against the
    earlier layout runs unchanged while it is updated. The old name becomes an alias of the same
    module object (``import nas.config`` and ``import nas.spec.config`` give one module).
    """

    def __init__(self, moved: Mapping[str, str], *, removal: str) -> None:
        self.moved = dict(moved)
        self.removal = removal

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = self.moved[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path is removed in {self.removal}",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """The new module is already executed."""


def install_moved_modules(moved: Mapping[str, str], *, removal: str) -> None:
    """Register ``moved`` (old dotted path → new one) on :data:`sys.meta_path`, once."""
    if not any(
        isinstance(f, DeprecatedModuleFinder) and f.moved == dict(moved) for f in sys.meta_path
    ):
        sys.meta_path.append(DeprecatedModuleFinder(moved, removal=removal))
