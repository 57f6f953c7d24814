"""The run's console: a stage's noisy latencies become one line; other warnings pass through."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nas.measure.latency import LatencyProtocol, NoisyMeasurementWarning, summarize_latency
from nas.pipeline.console import tally_noisy_latency


def test_noisy_latencies_of_a_stage_become_one_line() -> None:
    protocol = LatencyProtocol(warmup=0, repeats=4, noise_cv=0.1)
    with tally_noisy_latency() as tally:
        for spread in (1, 2, 3):  # three noisy measurements, one quiet one
            summarize_latency(
                [10_000, 10_000 + spread * 5_000], target="t", protocol=protocol, threads=1
            )
        summarize_latency([10_000, 10_001], target="t", protocol=protocol, threads=1)
    assert len(tally.cvs) == 3
    line = tally.line("measure")
    assert line is not None and line.startswith("[measure] 3 latency measurement(s)")
    worst = max(tally.cvs)
    assert f"worst CV {worst:.2f}" in line and "measure.latency_repeats" in line
    assert worst == pytest.approx(np.std([10, 25]) / np.mean([10, 25]))


def test_quiet_stage_prints_nothing_and_other_warnings_pass_through() -> None:
    with pytest.warns(UserWarning, match="unrelated"), tally_noisy_latency() as tally:
        warnings.warn("unrelated", UserWarning, stacklevel=1)
    assert tally.line("search") is None


def test_the_warning_carries_its_cv() -> None:
    with pytest.warns(NoisyMeasurementWarning) as caught:
        summarize_latency(
            [1_000, 3_000], target="t", protocol=LatencyProtocol(noise_cv=0.1), threads=1
        )
    assert caught[0].message.cv == pytest.approx(0.5)
    assert caught[0].message.limit == 0.1
