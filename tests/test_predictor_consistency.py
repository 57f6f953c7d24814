"""A metric driven by something the space does not encode is flagged once; a clean one is not.

The hidden factor here is an input resolution left out of the space (as when OFA subnets of
many resolutions are fitted in a space without resolution): latency scales with it, so
identical encodings carry widely different latencies.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import search_spaces
from predictors.consistency import (
    MAX_WITHIN_SHARE,
    UnencodedFactorWarning,
    check_duplicates,
    duplicate_spread,
)
from predictors.dataset import fit_predictor
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import fit_transfer


def _table(hidden: bool, n: int = 240) -> tuple[object, list, np.ndarray]:  # type: ignore[type-arg]
    """fbnet with 2 layers (81 architectures): n draws, so most architectures repeat."""
    space = search_spaces.get("fbnet", layers=2)
    rng = np.random.default_rng(0)
    configs = space.sample_many(n, rng)
    X = space.encode_many(configs)
    cost = rng.uniform(0.5, 3.0, size=(2, 9))
    latency = cost[0, X[:, 0]] + cost[1, X[:, 1]]
    if hidden:
        resolution = rng.choice([128, 160, 192, 224], size=n)
        latency = latency * (resolution / 160) ** 2
    else:
        latency = latency * rng.uniform(0.99, 1.01, size=n)  # 1 % timing noise
    return space, configs, latency


def test_hidden_resolution_warns_once_naming_the_metric() -> None:
    space, configs, latency = _table(hidden=True)
    with pytest.warns(UnencodedFactorWarning) as caught:
        fit_predictor(space, configs, latency, metric="latency_ms", target="phone", kind="ridge")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message
    assert message.startswith("latency_ms@phone: ") and "groups of identically encoded" in message
    spread = duplicate_spread(space, space.encode_many(configs), latency)
    assert spread.groups > 50 and spread.within_share > MAX_WITHIN_SHARE and spread.log_scale
    assert f"{spread.groups} groups" in message


def test_clean_tables_do_not_warn() -> None:
    space, configs, latency = _table(hidden=False)
    X = space.encode_many(configs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnencodedFactorWarning)
        fit_predictor(space, configs, latency, metric="latency_ms", target="phone", kind="ridge")
        distinct = list({c.key: c for c in configs}.values())
        check_duplicates(space, space.encode_many(distinct), np.arange(1.0, len(distinct) + 1),
                         metric="top1")  # fmt: skip
    spread = duplicate_spread(space, X, latency)
    assert spread.groups > 50 and spread.within_share < 0.01


def test_the_share_is_pooled_within_variance_over_total_variance() -> None:
    space = search_spaces.get("fbnet", layers=1)
    X = np.array([[0], [0], [1], [1], [2]])
    y = np.array([-1.0, 1.0, 9.0, 11.0, 5.0])  # not all positive: no log scale
    spread = duplicate_spread(space, X, y)
    # groups {-1, 1} and {9, 11}: squares 4 over 4 rows - 2 groups = 2; total variance 20
    assert (spread.groups, spread.rows, spread.log_scale) == (2, 4, False)
    assert spread.within_share == pytest.approx(2.0 / np.var(y, ddof=1))
    one_group = duplicate_spread(space, X[:3], np.array([1.0, 50.0, 3.0]))
    assert one_group.groups == 1 and not one_group.suspicious  # one pair proves little


def test_transfer_measurements_with_a_hidden_factor_warn() -> None:
    space = search_spaces.get("fbnet", layers=2)
    configs = space.decode_many(np.array([[i, j] for i in range(9) for j in range(9)]))
    X = space.encode_many(configs)
    bank = DeviceBank.from_configs(space, configs, {"gpu": 1.0 + X.sum(axis=1)})
    repeats = [configs[i] for i in (3, 3, 40, 40, 70, 70)]
    latency = [1.0, 4.0, 2.0, 8.0, 3.0, 12.0]  # each architecture at two resolutions
    with pytest.warns(UnencodedFactorWarning, match=r"^latency_ms@phone: 3 groups"):
        fit_transfer(bank, list(zip(repeats, latency, strict=True)), target="phone")
