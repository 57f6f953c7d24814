"""The main job on Fashion-MNIST, reduced: the exported front is true, its numbers honest.

A real run (Ray Train, real measurements, predictors, pymoo, export) on a small seeded subset of
Fashion-MNIST's training file. Checked on the run directory alone: every exported subnet is
non-dominated among every subnet measured in the run; with a latency constraint, feasible on
measured values; an impossible constraint exits 2 with one line before export; the ONNX graph
on the raw official test images reproduces the card's test accuracy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nas.artifacts.export import exported_paths, read_card
from nas.data.datasets import fashion_mnist_dir
from nas.data.idx import read_idx_split
from nas.pipeline import run_experiment
from nas.spec.config import ExperimentSpec
from tests.front_checks import check_exported_front, measured_values

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = [("top1", "max"), ("latency_ms@cpu_fp32_b64", "min")]
SPEC = """\
name = "fashion_test"
seed = 0
output_dir = "{output_dir}"

[space]
name = "fashion_cnn"

[data]
kind = "fashion_mnist"
train_size = 2048
val_size = 1000
calib_size = 300

[train]
epochs = 1
batch_size = 128
lr = 0.1

[ray]
cpus_per_worker = 2

[[targets]]
name = "cpu_fp32_b64"
runtime = "torch"
precision = "fp32"
threads = 1
batch_size = 64

[measure]
targets = ["cpu_fp32_b64"]
n_samples = 16
calib_images = 300
latency_repeats = 5
latency_warmup = 1

[predictors]
kind = "ridge"

[search]
algorithm = "pymoo-nsga2"
objectives = ["top1:max", "latency_ms@cpu_fp32_b64:min"]
constraints = [{constraints}]
budget = 48
use_predictors = true

[export]
onnx = true
max_subnets = {max_subnets}
"""


def _spec(directory: Path, out: Path, *, constraints: str = "", max_subnets: int = 4) -> Path:
    path = directory / f"spec_{abs(hash((constraints, max_subnets)))}.toml"
    path.write_text(SPEC.format(output_dir=out, constraints=constraints, max_subnets=max_subnets))
    return path


def _nas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nas", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "RAY_ADDRESS": "local"},
    )


def _rerun_from_search(run: Path, copy: Path) -> None:
    """A copy of a finished run whose search and export stages are to be redone (``--force``:
    a changed constraint makes the search stale; train, measure and fit are kept)."""
    shutil.copytree(run, copy)
    (copy / "search" / "DONE.json").unlink()
    shutil.rmtree(copy / "export")


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import ray

    ray.shutdown()
    directory = tmp_path_factory.mktemp("fashion")
    out = directory / "run"
    spec = ExperimentSpec.from_toml(_spec(directory, out))
    run_experiment(spec, log=lambda _: None)
    ray.shutdown()
    return out


@pytest.mark.ray
@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore::nas.measure.latency.NoisyMeasurementWarning")
def test_exported_front_is_non_dominated_among_everything_measured(fashion_run: Path) -> None:
    cards = check_exported_front(fashion_run, OBJECTIVES, targets=["cpu_fp32_b64"], max_subnets=4)
    for card in cards:
        report = card["accuracy"]
        assert report["val"]["n_images"] == 1000 and report["test"]["n_images"] == 10000
        assert "official test images" in report["splits"]
        low, high = report["test"]["ci95"]
        assert low < report["test"]["top1"] < high
        assert card["preprocessing"]["raw_range"] == [0.0, 255.0]
    # the space spans a trade-off even after one epoch
    values = measured_values(fashion_run, ["cpu_fp32_b64"])
    latency = [
        v["latency_ms@cpu_fp32_b64"] for v in values.values() if "latency_ms@cpu_fp32_b64" in v
    ]
    assert max(latency) / min(latency) > 3


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_onnx_on_raw_test_images_reproduces_the_card(fashion_run: Path) -> None:
    import onnxruntime as ort

    raw, labels = read_idx_split(fashion_mnist_dir(), "test")
    raw = raw.astype(np.float32)[:, None]  # raw pixels 0..255, no normalisation here
    for directory in exported_paths(fashion_run / "export"):
        card = read_card(directory)
        session = ort.InferenceSession(
            str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        logits = session.run(None, {"input": raw})[0]
        correct = int((logits.argmax(1) == labels).sum())
        expected = round(card["metrics"]["measured"]["top1_test"] * len(labels) / 100)
        # ONNX Runtime sums in another order: a fake-quantized activation on a rounding edge
        # may flip a bin and, rarely, an argmax; at most 2 of 10,000 images may differ.
        assert abs(correct - expected) <= 2, (directory.name, correct, expected)


@pytest.mark.ray
@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore::nas.measure.latency.NoisyMeasurementWarning")
def test_latency_constraint_holds_on_measured_values(fashion_run: Path, tmp_path: Path) -> None:
    values = measured_values(fashion_run, ["cpu_fp32_b64"])
    bound = float(np.median([v["latency_ms@cpu_fp32_b64"] for v in values.values()]))
    copy = tmp_path / "constrained"
    _rerun_from_search(fashion_run, copy)
    spec = _spec(tmp_path, copy, constraints=f'"latency_ms@cpu_fp32_b64 <= {bound:.4f}"')
    done = _nas("run", str(spec), "--force")
    assert "[train] done before with the same spec; skipped" in done.stdout
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check_exported_front(
        copy,
        OBJECTIVES,
        targets=["cpu_fp32_b64"],
        max_subnets=4,
        upper_bounds={"latency_ms@cpu_fp32_b64": round(bound, 4)},
    )


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_impossible_constraint_exits_2_with_one_line_before_export(
    fashion_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "impossible"
    _rerun_from_search(fashion_run, copy)
    spec = _spec(tmp_path, copy, constraints='"latency_ms@cpu_fp32_b64 <= 0.001"')
    done = _nas("run", str(spec), "--force")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "no measured subnet satisfies search.constraints" in errors[0]
    assert "latency_ms@cpu_fp32_b64 <= 0.001" in errors[0]
    assert "closest measured subnet" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (copy / "export").exists()
    assert not (copy / "search" / "DONE.json").exists()


def test_constraints_no_subnet_can_meet_are_refused_before_any_work(tmp_path: Path) -> None:
    for constraints, words in [
        ('"params_m <= 0.0001"', "below the smallest subnet"),
        ('"params_m >= 10"', "above the largest subnet"),
        ('"macs_m <= 1", "macs_m >= 2"', "contradict each other"),
        ('"latency_ms@cpu_fp32_b64 <= -1"', "latency is positive"),
    ]:
        out = tmp_path / "never"
        done = _nas("run", str(_spec(tmp_path, out, constraints=constraints)))
        assert done.returncode == 2, done.stderr[-2000:]
        assert words in done.stderr and "search.constraints" in done.stderr
        assert "Traceback" not in done.stderr
        assert not out.exists()
