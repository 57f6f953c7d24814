"""Execution layer: the only package that may import Ray (and only in its ray_* modules)."""

from nas.execution.base import Executor
from nas.execution.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
