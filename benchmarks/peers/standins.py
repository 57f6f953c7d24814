"""STAND-IN MODULES, benchmark only: empty placeholders for DyNAS-T's heavy optional imports.

DyNAS-T 1.6.0 imports torchvision, torchprofile, transformers and fairseq at module level for its
own supernets (OFA, BERT, Transformer-LT, ViT) and dataset loaders. The benchmark drives none of
those: it runs DyNAS-T's search tactics (LINAS, Evolutionary) on its user-supernet extension
point with table lookups as metric functions, a path on which none of these libraries runs.
:func:`install` makes ``import torchvision`` (and any submodule of the four) give a placeholder
module whose every attribute is a placeholder class, for names not installed for real. Nothing
here computes anything; a placeholder that is called for real raises at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

STANDIN_NAMES: tuple[str, ...] = ("torchvision", "torchprofile", "transformers", "fairseq")


class _Placeholder:
    """Any attribute of a stand-in module: subclassable, usable as a decorator factory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as @decorator(...)(fn): leave fn unchanged
        raise RuntimeError("a benchmark stand-in module was called for real")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()


class _StandinModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # ``__file__ = None``: DyNAS-T loads ``fairseq.libbleu.__file__`` with ctypes at import
        # time, and ``ctypes.CDLL(None)`` opens the running program, which loads nothing new
        return type(name, (_Placeholder,), {"__module__": self.__name__, "__file__": None})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        module = _StandinModule(spec.name, "benchmark stand-in (benchmarks/peers/standins.py)")
        module.__path__ = []  # a package, so that submodules import
        return module

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        return None


def install() -> list[str]:
    """Register the stand-ins for those of :data:`STANDIN_NAMES` not installed; return them."""
    missing = {n for n in STANDIN_NAMES if importlib.util.find_spec(n) is None}
    if missing and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder(missing))
    return sorted(missing)
