"""Predictors on our own supernet: data set from a trained tiny_cnn, real measurement, quality."""

from __future__ import annotations

import math

import pytest
import torch

import search_spaces
from nas.data.datasets import load_digits_data
from nas.measure.evaluate import measure_configs as measure_latencies
from nas.measure.latency import LatencyProtocol
from nas.measure.targets import HardwareTarget
from nas.pipeline import AccuracyEvaluator
from nas.results import ResultStore
from nas.search.objectives import NO_TARGET
from nas.training.config import TrainConfig
from nas.training.loop import train_locally
from predictors.dataset import measure_configs, sample_configs, train_from_store


@pytest.mark.timeout(600)
def test_predictors_from_a_trained_supernet_report_their_quality(tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    data = load_digits_data(seed=0)
    torch.set_num_threads(1)
    supernet, _ = train_locally(
        space, data, TrainConfig(epochs=2, batch_size=64, seed=0), evaluate=False, log=None
    )
    supernet.eval()
    configs = sample_configs(space, 48, seed=0)
    store = ResultStore(tmp_path / "results.jsonl")
    accuracy = AccuracyEvaluator(supernet, data, split="val", calib_images=128)
    measure_configs(configs, accuracy, target=NO_TARGET, store=store)
    # Batch 64: at batch 1 every tiny_cnn subnet takes ~0.5 ms of per-layer overhead on 8×8
    # inputs, and load from other processes would decide the ranking. 15 repeats: with 7, the
    # medians on a loaded 2-core machine (cv 0.10-0.18 per config) once ranked the 12 held-out
    # configs with tau 0.24.
    target = HardwareTarget(name="cpu_fp32_b64", batch_size=64)
    measure_latencies(
        supernet, configs, target, store, protocol=LatencyProtocol(warmup=3, repeats=15), seed=0
    )
    assert len(ResultStore(tmp_path / "results.jsonl")) == 2 * len(configs)

    reports = {}
    for metric, on, recorded in (
        ("top1", NO_TARGET, ""),
        ("latency_ms", "cpu_fp32_b64", None),
        ("macs_m", NO_TARGET, ""),
    ):
        fit = train_from_store(
            store,
            space,
            metric=metric,
            target=on,
            predictor_target=recorded,
            kind="ridge",
            test_size=0.25,
            random_state=0,
        )
        report = fit.predictor.quality
        print(report.to_table())
        reports[metric] = report
        assert report.n_train == 36 and report.n_test == 12
        assert all(math.isfinite(v) for v in (report.kendall_tau, report.spearman, report.rmse))
    # Analytic MACs are a near-linear function of the encoding; measured latency follows them.
    assert reports["macs_m"].kendall_tau > 0.8
    assert reports["latency_ms"].kendall_tau > 0.3
    # Subnet accuracies on 270 digits differ by about as much as one split's sampling noise,
    # so the accuracy ranking is not asserted (it is reported above); its values must be close.
    assert reports["top1"].mape < 0.1
