"""Accuracy as a target deploys the model: fp32 without fake quantization, real int8 kernels."""

from __future__ import annotations

import pytest
import torch

import search_spaces
from nas.data.datasets import load_digits_data
from nas.measure.deployed_accuracy import deployed_top1
from nas.measure.latency import deployable
from nas.measure.targets import default_registry
from nas.training.config import TrainConfig
from nas.training.loop import train_locally
from nas.training.recalibrate import recalibrate_bn


@pytest.fixture(scope="module")
def trained() -> tuple:
    torch.manual_seed(0)
    data = load_digits_data(seed=0)
    space = search_spaces.get("tiny_cnn")
    config = TrainConfig(epochs=3, batch_size=64, seed=0)
    supernet, _ = train_locally(space, data, config, log=None, evaluate=False)
    largest = space.largest()
    calib_x, _ = data.tensors("calib")
    recalibrate_bn(supernet, largest, calib_x[:256])
    return supernet.eval().export(largest).eval(), data


@pytest.mark.timeout(300)
def test_fp32_targets_score_the_float_model(trained: tuple) -> None:
    module, data = trained
    x, y = data.tensors("test")
    calib_x, _ = data.tensors("calib")
    with torch.no_grad():
        expected = float((deployable(module)(x).argmax(1) == y).float().mean())
    registry = default_registry()
    for name in ("cpu_fp32", "ort_fp32"):
        got = deployed_top1(module, registry.get(name), calib_x=calib_x, x=x, y=y)
        assert got == pytest.approx(expected, abs=1.0 / len(y) + 1e-9), name
    assert expected > 0.5  # a trained model, so agreement below is meaningful


@pytest.mark.timeout(300)
def test_int8_targets_run_real_kernels_close_to_float(trained: tuple) -> None:
    module, data = trained
    x, y = data.tensors("test")
    calib_x, _ = data.tensors("calib")
    registry = default_registry()
    fp32 = deployed_top1(module, registry.get("cpu_fp32"), calib_x=calib_x, x=x, y=y)
    for name in ("cpu_int8", "ort_int8"):
        int8 = deployed_top1(module, registry.get(name), calib_x=calib_x, x=x, y=y)
        assert 0.0 < int8 <= 1.0
        assert abs(int8 - fp32) < 0.05, (name, int8, fp32)
