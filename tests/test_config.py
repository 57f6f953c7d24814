"""Experiment specs: bad keys or values fail before any work, naming key and allowed values."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import ConfigError
from nas.pipeline import resolve
from nas.spec.config import SECTIONS, ExperimentSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "default.toml"


def test_every_shipped_spec_is_valid() -> None:
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        resolve(ExperimentSpec.from_toml(path))


@pytest.mark.parametrize("section", [s for s in SECTIONS if s not in ("train", "space")])
def test_unknown_key_in_every_section_names_the_allowed_keys(section: str) -> None:
    cls = SECTIONS[section]
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict({section: {"no_such_key": 1}})
    message = str(info.value)
    assert f"{section}.no_such_key" in message
    assert str(allowed) in message


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"sede is not a valid key; allowed keys: \[.*'seed'"):
        ExperimentSpec.from_dict({"sede": 1})


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"space": {"name": "resnet"}}, ["space.name='resnet'", "tiny_cnn", "mobilenet_like"]),
        ({"space": {"name": "nas_bench_201"}}, ["space.name='nas_bench_201'", "tiny_cnn"]),
        ({"data": {"kind": "imagenet"}}, ["data.kind='imagenet'", "digits", "npz", "folder"]),
        ({"data": {"kind": "npz"}}, ["data.path"]),
        ({"search": {"algorithm": "nsga9"}}, ["search.algorithm='nsga9'", "pymoo-nsga2"]),
        ({"search": {"objectives": ["top1:max"]}}, ["objectives", "2"]),
        ({"search": {"objectives": ["top1:best", "latency_ms@cpu_fp32:min"]}}, ["'best'", "max"]),
        ({"search": {"constraints": ["latency_ms < 5"]}}, ["<=", ">="]),
        ({"search": {"budget": 0}}, ["search.budget=0"]),
        ({"search": {"budget": "many"}}, ["search.budget='many'", "int"]),
        ({"predictors": {"kind": "xgboost"}}, ["predictors.kind='xgboost'", "gbr"]),
        ({"predictors": {"test_fraction": 1.5}}, ["predictors.test_fraction=1.5"]),
        ({"measure": {"targets": []}}, ["measure.targets"]),
        ({"measure": {"eval_split": "test"}}, ["measure.eval_split='test'", "val"]),
        ({"measure": {"n_samples": -3}}, ["measure.n_samples=-3"]),
        ({"ray": {"num_workers": 0}}, ["ray.num_workers=0"]),
        ({"export": {"max_subnets": 0}}, ["export.max_subnets=0"]),
        ({"targets": [{"name": "rpi", "runtime": "tflite"}]}, ["runtime='tflite'", "torch"]),
        ({"targets": [{"name": "rpi", "precision": "fp16"}]}, ["precision='fp16'", "int8"]),
        ({"seed": -1}, ["seed=-1"]),
    ],
)
def test_bad_values_name_key_and_allowed_values(data: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict(data)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"measure": {"targets": ["gpu"]}}, ["measure.targets[0]='gpu'", "cpu_fp32"]),
        (
            {"search": {"objectives": ["top1:max", "latency_ms@ort_int8:min"]}},
            ["ort_int8", "measure.targets"],
        ),
        ({"search": {"objectives": ["top1:max", "energy_mj:min"]}}, ["energy_mj", "params_m"]),
        (
            {"search": {"constraints": ["latency_ms@cpu_int8 <= 5"]}},
            ["cpu_int8", "measure.targets"],
        ),
    ],
)
def test_cross_references_are_checked_before_work(data: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(ExperimentSpec.from_dict(data))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_cli_reports_a_bad_spec_with_exit_status_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[search]\nalgorithm = "nsga9"\n')
    result = subprocess.run(
        [sys.executable, "-m", "nas", "run", str(spec), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "search.algorithm='nsga9'" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing started
