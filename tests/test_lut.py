from __future__ import annotations

import numpy as np
import pytest
import torch

import search_spaces
from nas.errors import ConfigError
from nas.measure.latency import LatencyProtocol
from nas.measure.lut import (
    LatencyTable,
    PredictionReport,
    build_latency_table,
    covering_configs,
    layer_keys,
    layer_modules,
)
from nas.measure.targets import default_registry
from nas.space import SearchSpace
from nas.supernets.base import Supernet

FAST = LatencyProtocol(warmup=1, repeats=3, noise_cv=100.0, calibration_batches=1)
SPACES = {
    "tiny_cnn": {},
    "mobilenet_like": {"resolution": 32, "num_classes": 10, "width_mults": (0.75, 1.0)},
}


def _space(name: str) -> SearchSpace:
    return search_spaces.get(name, **SPACES[name])


@pytest.mark.parametrize("name", sorted(SPACES))
def test_covering_configs_contain_every_layer_shape(name: str) -> None:
    space = _space(name)
    target = default_registry().get("cpu_fp32")
    covered = {k for c in covering_configs(space) for k in layer_keys(space, c, target)}
    rng = np.random.default_rng(0)
    for config in [*space.sample_many(40, rng), space.smallest(), space.largest()]:
        assert set(layer_keys(space, config, target)) <= covered


@pytest.mark.parametrize("name", sorted(SPACES))
def test_layer_modules_compose_to_the_exported_subnet(name: str) -> None:
    space = _space(name)
    subnet = Supernet(space).eval().export(space.largest()).eval()
    target = default_registry().get("cpu_fp32")
    keys = layer_keys(space, space.largest(), target)
    modules = layer_modules(subnet)
    assert len(keys) == len(modules)
    r = keys[0].resolution
    x = torch.randn(2, keys[0].in_channels, r, r)
    out = x
    for key, module in zip(keys, modules, strict=True):
        assert out.shape[1] == key.in_channels and out.shape[-1] == key.resolution
        out = module(out)
    torch.testing.assert_close(out, subnet(x))


def test_int8_targets_key_executed_bits() -> None:
    space = _space("mobilenet_like")
    registry = default_registry()
    fp32 = layer_keys(space, space.largest(), registry.get("ort_fp32"))
    int8 = layer_keys(space, space.largest(), registry.get("ort_int8"))
    assert {k.bits for k in fp32} == {32} and {k.bits for k in int8} == {8}


@pytest.fixture(scope="module")
def tiny_table() -> tuple[SearchSpace, LatencyTable]:
    torch.manual_seed(0)
    space = _space("tiny_cnn")
    table = build_latency_table(
        Supernet(space).eval(), default_registry().get("cpu_fp32"), protocol=FAST
    )
    return space, table


def test_table_predicts_sum_of_entries(tiny_table: tuple[SearchSpace, LatencyTable]) -> None:
    space, table = tiny_table
    target = table.target
    for config in space.sample_many(10, np.random.default_rng(1)):
        keys = layer_keys(space, config, target)
        assert table.predict(space, config) == pytest.approx(sum(table.entries[k] for k in keys))
    assert all(v > 0 for v in table.entries.values())


def test_missing_entry_raises_naming_the_config(
    tiny_table: tuple[SearchSpace, LatencyTable],
) -> None:
    space, table = tiny_table
    config = space.largest()
    key = layer_keys(space, config, table.target)[1]
    partial = LatencyTable(table.target, {k: v for k, v in table.entries.items() if k != key})
    with pytest.raises(ConfigError, match=config.key):
        partial.predict(space, config)


def test_calibration_recovers_an_affine_map(tiny_table: tuple[SearchSpace, LatencyTable]) -> None:
    space, table = tiny_table
    configs = space.sample_many(12, np.random.default_rng(2))
    raw = np.array([table.predict_raw(space, c) for c in configs])
    cal = table.calibrated(space, configs, 1.5 * raw + 0.25)
    assert cal.scale == pytest.approx(1.5) and cal.offset_ms == pytest.approx(0.25)
    off = table.calibrated(space, configs, raw + 0.25, mode="offset")
    assert off.scale == 1.0 and off.offset_ms == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="mode"):
        table.calibrated(space, configs, raw, mode="cubic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one measurement per config"):
        table.calibrated(space, configs, raw[:3])


def test_table_round_trips_through_json(
    tiny_table: tuple[SearchSpace, LatencyTable], tmp_path
) -> None:
    space, table = tiny_table
    cal = table.calibrated(space, [space.smallest(), space.largest()], [1.0, 2.0])
    loaded = LatencyTable.load(cal.save(tmp_path / "lut.json"))
    assert loaded == cal
    assert loaded.predict(space, space.largest()) == cal.predict(space, space.largest())


def test_prediction_report_metrics() -> None:
    report = PredictionReport.compare([1.0, 2.0, 3.3, 5.0], [1.0, 2.1, 3.0, 4.0])
    assert report.n == 4 and report.spearman == pytest.approx(1.0)
    assert report.within_10pct == pytest.approx(0.75)
    assert report.mape == pytest.approx((0 + 0.1 / 2.1 + 0.1 + 0.25) / 4)


def test_larger_configs_predict_slower_on_mobilenet() -> None:
    torch.manual_seed(0)
    space = _space("mobilenet_like")
    net = Supernet(space).eval()
    small, large = space.smallest(), space.largest()
    table = build_latency_table(
        net, default_registry().get("ort_fp32"), configs=[small, large], protocol=FAST
    )
    assert table.predict(space, large) > 1.5 * table.predict(space, small)


def test_tables_refuse_targets_that_mix_bit_widths() -> None:
    import search_spaces
    from nas.errors import ConfigError
    from nas.measure.lut import layer_keys
    from nas.measure.targets import default_registry

    space = search_spaces.get("tiny_cnn")
    for name in ("ort_w4", "ort_mixed"):
        with pytest.raises(ConfigError, match=r"target\.precision='(w4|mixed)': latency tables"):
            layer_keys(space, space.largest(), default_registry().get(name))
