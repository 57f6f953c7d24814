"""Modules moved in 0.2.0: the old paths still import (and warn); nothing of ours uses them."""

from __future__ import annotations

import json
import subprocess
import sys

import nas
import predictors

MOVED = {**nas.MOVED_MODULES, **predictors.MOVED_MODULES}

_CHECK_ALIASES = """
import importlib, json, sys, warnings
moved = json.loads(sys.argv[1])
problems = []
for old, new in moved.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    if module is not importlib.import_module(new):
        problems.append(f"{old} is not {new}")
    if not any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               for w in caught):
        problems.append(f"{old} did not warn naming {new}")
print(json.dumps(problems))
"""

_CHECK_OWN_IMPORTS = """
import importlib, json, pkgutil, warnings
found = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("nas", "predictors", "search_spaces"):
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
found = [str(w.message) for w in caught if "0.3.0" in str(w.message)]
print(json.dumps(found))
"""


def _run(code: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_old_path_is_the_new_module_and_warns() -> None:
    assert len(MOVED) >= 30
    assert _run(_CHECK_ALIASES, json.dumps(MOVED)) == []


def test_no_module_of_ours_imports_an_old_path() -> None:
    assert _run(_CHECK_OWN_IMPORTS) == []


def test_old_paths_are_not_modules_any_more() -> None:
    """Each old path is only an alias: no file of that name is left behind to drift."""
    from importlib.util import find_spec
    from pathlib import Path

    root = Path(nas.__file__).resolve().parents[1]
    for old in MOVED:
        stem = root.joinpath(*old.split("."))
        new = MOVED[old]
        if stem.is_dir():  # a module that became a package of the same name
            assert find_spec(new) is not None
            continue
        assert not stem.with_suffix(".py").exists(), old
