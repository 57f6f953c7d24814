from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import search_spaces
from nas.deploy.int8 import is_int8_graph, quantize_onnx_int8, quantize_torch_int8
from nas.deploy.onnx_export import export_module_onnx
from nas.elastic.quantization import FakeQuantize
from nas.errors import ConfigError
from nas.measure.evaluate import measure_config, measure_configs, peak_activation_bytes
from nas.measure.latency import (
    LatencyProtocol,
    NoisyMeasurementWarning,
    deployable,
    measure_latency,
    summarize_latency,
)
from nas.measure.targets import HardwareTarget, builtin_targets, default_registry
from nas.results import ResultStore
from nas.supernets.base import Supernet

FAST = LatencyProtocol(warmup=1, repeats=3, noise_cv=100.0, calibration_batches=2)


@pytest.fixture(scope="module")
def mobilenet() -> Supernet:
    torch.manual_seed(0)
    space = search_spaces.get("mobilenet_like", resolution=32, num_classes=10)
    return Supernet(space).eval()


def test_summary_statistics_are_median_iqr_and_cv() -> None:
    samples = np.array([1, 2, 3, 4, 100], dtype=np.int64) * 1_000_000
    with pytest.warns(NoisyMeasurementWarning, match="noisy"):
        res = summarize_latency(
            samples, target="t", protocol=LatencyProtocol(noise_cv=0.5), threads=1
        )
    assert res.median_ms == 3.0
    assert res.iqr_ms == 2.0
    assert res.cv == pytest.approx(np.std([1, 2, 3, 4, 100]) / 22.0)
    assert res.noisy and res.metrics()["latency_noisy"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = summarize_latency(
            [10, 10, 11], target="t", protocol=LatencyProtocol(noise_cv=0.5), threads=1
        )
    assert not quiet.noisy


@pytest.mark.parametrize(
    "kwargs", [{"warmup": -1}, {"repeats": 0}, {"noise_cv": 0.0}, {"calibration_batches": 0}]
)
def test_bad_protocol_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        LatencyProtocol(**kwargs)  # type: ignore[arg-type]


def test_deployable_strips_fake_quant_and_leaves_original(mobilenet: Supernet) -> None:
    subnet = mobilenet.export(mobilenet.space.smallest())  # smallest config uses 4-bit blocks
    assert any(isinstance(m, FakeQuantize) for m in subnet.modules())
    stripped = deployable(subnet)
    assert not any(isinstance(m, FakeQuantize) for m in stripped.modules())
    assert any(isinstance(m, FakeQuantize) for m in subnet.modules())


@pytest.mark.parametrize("target", builtin_targets(), ids=lambda t: t.name)
def test_every_builtin_target_measures_and_restores_threads(
    mobilenet: Supernet, target: HardwareTarget
) -> None:
    subnet = mobilenet.export(mobilenet.space.largest())
    before = torch.get_num_threads()
    res = measure_latency(subnet, (1, 3, 32, 32), target, protocol=FAST)
    assert torch.get_num_threads() == before
    assert res.median_ms > 0 and res.repeats == 3 and res.threads == target.threads
    assert res.min_ms <= res.median_ms and res.iqr_ms >= 0 and res.cv >= 0


def test_onnx_int8_model_is_really_quantized_and_close(mobilenet: Supernet, tmp_path) -> None:
    subnet = deployable(mobilenet.export(mobilenet.space.largest()))
    fp32 = export_module_onnx(subnet, (1, 3, 32, 32), tmp_path / "m.onnx")
    assert not is_int8_graph(fp32)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    int8 = quantize_onnx_int8(fp32, tmp_path / "m8.onnx", calib)
    assert is_int8_graph(int8)


def test_torch_int8_uses_quantized_kernels(mobilenet: Supernet) -> None:
    subnet = deployable(mobilenet.export(mobilenet.space.largest()))
    x = torch.randn(2, 3, 32, 32)
    q = quantize_torch_int8(subnet, [x])
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds), kinds
    from nas.deploy.int8 import quantized_engine

    with quantized_engine(), torch.inference_mode():
        out, ref = q(x), subnet(x)
    assert out.shape == ref.shape
    assert torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1] > 0.9


def test_measure_config_metrics_and_store_resume(mobilenet: Supernet, tmp_path) -> None:
    target = default_registry().get("ort_fp32")
    space = mobilenet.space
    configs = [space.smallest(), space.largest(), space.smallest()]
    store = ResultStore(tmp_path / "r.jsonl")
    out = measure_configs(mobilenet, configs, target, store, protocol=FAST)
    assert [e.config for e in out] == [space.validate(c) for c in configs]
    assert len(store) == 2
    small, large = out[0].metrics, out[1].metrics
    for key in ("latency_ms", "latency_cv", "params_m", "macs_m", "model_size_bytes"):
        assert key in small
    assert large["macs_m"] > small["macs_m"]
    assert large["peak_activation_bytes"] > small["peak_activation_bytes"] > 0
    # a reloaded store skips everything already measured
    reloaded = ResultStore(tmp_path / "r.jsonl")
    again = measure_configs(mobilenet, configs, target, reloaded, protocol=FAST)
    assert [e.timestamp for e in again] == [e.timestamp for e in out]
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 2


def test_target_resolution_overrides_the_space(mobilenet: Supernet) -> None:
    target = HardwareTarget("small", resolution=16)
    ev = measure_config(mobilenet, mobilenet.space.smallest(), target, protocol=FAST)
    assert ev.metrics["resolution"] == 16.0


def test_peak_activation_counts_the_largest_live_tensors() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    # conv: input 1*8*8 + output 4*8*8; relu: 2 * 4*8*8 -> peak 512 floats
    assert peak_activation_bytes(net, (1, 1, 8, 8)) == 512 * 4
