"""Shared fixtures: small spaces and supernets, seeded generators."""

from __future__ import annotations

import os

# Every Ray instance of the test session (local ones and the `ray start` clusters on loopback)
# runs without token authentication. Ray caches the mode per process, so it must be the same for
# the whole session: mixing modes makes a later local instance refuse the driver's connection.
os.environ["RAY_AUTH_MODE"] = "disabled"

import numpy as np
import pytest
import torch

import search_spaces
from nas.space import SearchSpace

# mobilenet_like at a reduced resolution and class count keeps supernet tests fast.
SUPERNET_SPACE_OPTIONS: dict[str, dict[str, object]] = {
    "tiny_cnn": {},
    "mobilenet_like": {"resolution": 32, "num_classes": 10, "width_mults": (0.75, 1.0)},
}


def build_space(name: str) -> SearchSpace:
    return search_spaces.get(name, **SUPERNET_SPACE_OPTIONS.get(name, {}))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_space() -> SearchSpace:
    return search_spaces.get("tiny_cnn")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)
