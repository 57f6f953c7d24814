"""Shared fixtures: small spaces and supernets, seeded generators."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import search_spaces
from nas.space import SearchSpace

# Every Ray instance of the test session (local ones and the `ray start` clusters on loopback)
# uses token authentication, with a token of the session's own, so tests neither read nor write
# ~/.ray/auth_token. Ray caches the mode per process, so it is set once for the whole session,
# before any test imports Ray (the imports above do not).
_TOKEN_DIR = Path(tempfile.mkdtemp(prefix="nas-tests-ray-token-"))
(_TOKEN_DIR / "auth_token").write_text(secrets.token_hex(32))
atexit.register(shutil.rmtree, _TOKEN_DIR, ignore_errors=True)
os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_TOKEN_DIR / "auth_token")
os.environ["RAY_AUTH_MODE"] = "token"

# mobilenet_like at a reduced resolution and class count keeps supernet tests fast.
SUPERNET_SPACE_OPTIONS: dict[str, dict[str, object]] = {
    "tiny_cnn": {},
    "mobilenet_like": {"resolution": 32, "num_classes": 10, "width_mults": (0.75, 1.0)},
    "tiny_cnn[resolutions]": {"resolutions": (6, 8)},
}
SUPERNET_CASES: tuple[str, ...] = (*search_spaces.SUPERNET_SPACES, "tiny_cnn[resolutions]")
"""Conformance cases: every supernet space, plus variants (``name[variant]``) of some."""


def build_space(name: str) -> SearchSpace:
    return search_spaces.get(name.split("[")[0], **SUPERNET_SPACE_OPTIONS.get(name, {}))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_space() -> SearchSpace:
    return search_spaces.get("tiny_cnn")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts Ray (pipelines, Ray Train, clusters) is in the slow tier too.

    The fast tier (``pytest``, the default) is the contributor's inner loop; CI runs both
    (``-m "slow or not slow"``).
    """
    timed = _timed_slow_ids()
    for item in items:
        if item.get_closest_marker("slow") is not None:
            continue
        if item.get_closest_marker("ray") is not None or item.nodeid in timed:
            item.add_marker(pytest.mark.slow)


def _timed_slow_ids() -> frozenset[str]:
    """Node ids in ``tests/slow_tier.txt``: fast-tier tests measured to take seconds each."""
    path = Path(__file__).with_name("slow_tier.txt")
    lines = (line.strip() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))
