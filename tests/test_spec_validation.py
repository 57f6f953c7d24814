"""Every malformed spec gets exit 2, one line naming the key, no traceback and no output.

Bad values come from the spec schema itself (``tests/spec_cases.py``: every key, every kind of
bad value), from hypothesis drawing over the same schema, and from hand-made files (binary,
deeply nested, a directory, bad data files, impossible constraints, a taken output_dir).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.spec.config import spec_schema
from nas.spec_fields import MAX_INT
from tests.spec_cases import BASE_SPEC, BadCase, _base_type, _literal_choices, bad_cases, to_toml

CASES = bad_cases()


def _refused(directory: Path, spec_file: Path, named: str) -> str:
    """Run ``nas validate`` then ``nas run`` on the file; both must refuse with one line."""
    before = sorted(os.listdir(directory))
    for command in ("validate", "run"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([command, str(spec_file)])
        lines = err.getvalue().strip().splitlines()
        assert code == 2, f"nas {command} accepted it (exit {code}): {lines}"
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert named in lines[0], f"{named!r} not in {lines[0]!r}"
    assert sorted(os.listdir(directory)) == before, "a refused spec created files"
    return lines[0]


def test_the_schema_yields_enough_cases() -> None:
    assert len(CASES) >= 300
    keys = {key for key, *_ in spec_schema()}
    covered = {case.key for case in CASES}
    assert {k for k in keys if not k.endswith("options")} <= covered


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_bad_value_of_every_key_is_refused(case: BadCase, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(to_toml(case.spec(str(tmp_path / "out"))))
    _refused(tmp_path, spec_file, case.named)


def test_the_base_spec_is_valid(tmp_path: Path) -> None:
    """Without it the cases above could pass on an error that has nothing to do with them."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(to_toml({**BASE_SPEC, "output_dir": str(tmp_path / "out")}))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["validate", str(spec_file)]) == 0
    assert not (tmp_path / "out").exists()


# -- hypothesis over the same schema -------------------------------------------------------------
SCALARS = [
    (key, hint, rule)
    for key, hint, rule, _ in spec_schema()
    if _base_type(hint)[0] in (bool, int, float, str)
    or typing.get_origin(_base_type(hint)[0]) is tuple
]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _bad_scalar(kind: typing.Any, rule: typing.Any, choices: typing.Any) -> st.SearchStrategy:
    wrong_type = {
        bool: st.one_of(st.integers(-5, 5), TEXT),
        int: st.one_of(TEXT, st.booleans(), st.floats(allow_nan=False).filter(lambda v: v % 1)),
        float: st.one_of(TEXT, st.booleans()),
        str: st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans()),
    }[kind]
    options = [wrong_type]
    if kind is int:
        if rule.low is not None:
            options.append(st.integers(-(2**63), int(rule.low) - (0 if rule.low_open else 1)))
        high = MAX_INT if rule.high is None else int(rule.high)
        options.append(st.integers(high + (0 if rule.high_open else 1), 2**63 - 1))
    if kind is float:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if rule.low is not None:
            options.append(st.floats(max_value=rule.low, exclude_max=not rule.low_open))
        if rule.high is not None:
            options.append(st.floats(min_value=rule.high, exclude_min=not rule.high_open))
    if kind is str:
        allowed = choices or rule.allowed_choices()
        if allowed is not None:
            options.append(TEXT.filter(lambda t: t not in allowed))
        if rule.non_empty:
            options.append(st.just(""))
    return st.one_of(options)


@st.composite
def bad_specs(draw: Callable) -> BadCase:
    key, hint, rule = draw(st.sampled_from(SCALARS))
    kind, _ = _base_type(hint)
    if typing.get_origin(kind) is tuple:
        (item,) = typing.get_args(kind)[:1]
        value = [draw(_bad_scalar(item, rule, None))]
    else:
        value = draw(_bad_scalar(kind, rule, _literal_choices(hint)))
    return BadCase(key, value, "hypothesis")


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=bad_specs())
def test_hypothesis_bad_values_are_refused(case: BadCase) -> None:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        spec_file = directory / "spec.toml"
        spec_file.write_text(to_toml(case.spec(str(directory / "out"))))
        _refused(directory, spec_file, case.named)


# -- hand-made files ---------------------------------------------------------------------------
def _spec_text(**changes: typing.Any) -> str:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE_SPEC.items()}
    for dotted, value in changes.items():
        *sections, leaf = dotted.split("__")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return to_toml(data)


def _write(directory: Path, body: str | bytes, **changes: typing.Any) -> Path:
    spec_file = directory / "spec.toml"
    if isinstance(body, bytes):
        spec_file.write_bytes(body)
    else:
        spec_file.write_text(body or _spec_text(output_dir=str(directory / "out"), **changes))
    return spec_file


def _npz_text_file(directory: Path) -> Path:
    (directory / "data.npz").write_text("not an npz archive\n")
    return _write(directory, "", data={"kind": "npz", "path": str(directory / "data.npz")})


def _npz_object_arrays(directory: Path) -> Path:
    np.savez(directory / "data.npz", x=np.array([object()] * 4), y=np.arange(4))
    return _write(directory, "", data={"kind": "npz", "path": str(directory / "data.npz")})


def _output_dir_is_a_file(directory: Path) -> Path:
    (directory / "taken").write_text("a file\n")
    return _write(directory, _spec_text(output_dir=str(directory / "taken")))


def _output_dir_under_a_file(directory: Path) -> Path:
    (directory / "taken").write_text("a file\n")
    return _write(directory, _spec_text(output_dir=str(directory / "taken" / "run")))


def _spec_is_a_directory(directory: Path) -> Path:
    (directory / "spec.toml").mkdir()
    return directory / "spec.toml"


HAND_MADE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "binary": (lambda d: _write(d, bytes(range(256)) * 4), "UTF-8"),
    "latin-1": (lambda d: _write(d, 'name = "caf\xe9"\n'.encode("latin-1")), "UTF-8"),
    "deeply nested": (lambda d: _write(d, "x = " + "[" * 5000 + "]" * 5000 + "\n"), "TOML"),
    "nested tables": (lambda d: _write(d, "x = " + "{a = " * 3000 + "1" + "}" * 3000), "TOML"),
    "not TOML": (lambda d: _write(d, "name = \n[[[\n"), "invalid TOML"),
    "huge": (lambda d: _write(d, "# " + "x" * 2_000_000 + "\n"), "at most"),
    "a directory": (_spec_is_a_directory, "not a file"),
    "space options a string": (
        lambda d: _write(d, "", space={"options": "wide"}),
        "space.options",
    ),
    "space option unknown": (
        lambda d: _write(d, "", space={"name": "tiny_cnn", "options": {"depth": 3}}),
        "space.options.depth",
    ),
    "space option wrong type": (
        lambda d: _write(d, "", space={"name": "tiny_cnn", "options": {"bits": "8"}}),
        "space.options.bits",
    ),
    "seed 2**63-1": (lambda d: _write(d, "", seed=2**63 - 1), "seed"),
    "npz is a text file": (_npz_text_file, "data.path"),
    "npz holds object arrays": (_npz_object_arrays, "data.path"),
    "output_dir is a file": (_output_dir_is_a_file, "output_dir"),
    "output_dir under a file": (_output_dir_under_a_file, "output_dir"),
    "output_dir empty": (lambda d: _write(d, _spec_text(output_dir="")), "output_dir"),
    "name 42": (lambda d: _write(d, "", name=42), "name"),
    "name with a slash": (lambda d: _write(d, "", name="../up"), "name"),
    "n_samples 1": (
        lambda d: _write(d, "", measure={"targets": ["cpu_fp32"], "n_samples": 1}),
        "measure.n_samples",
    ),
    "n_samples too few to fit": (
        lambda d: _write(d, "", measure={"targets": ["cpu_fp32"], "n_samples": 9}),
        "measure.n_samples",
    ),
    "unknown measure target": (
        lambda d: _write(d, "", measure={"targets": ["tpu_v9"], "n_samples": 16}),
        "measure.targets[0]",
    ),
    "duplicate measure targets": (
        lambda d: _write(d, "", measure={"targets": ["cpu_fp32", "cpu_fp32"], "n_samples": 16}),
        "measure.targets",
    ),
    "duplicate objectives": (
        lambda d: _write(
            d,
            "",
            search={"objectives": ["top1:max", "top1:max", "latency_ms@cpu_fp32:min"]},
        ),
        "search.objectives",
    ),
    "duplicate target tables": (
        lambda d: _write(
            d,
            _spec_text(output_dir=str(d / "out"))
            + '[[targets]]\nname = "extra_target"\nruntime = "torch"\n',
        ),
        "targets",
    ),
    "contradictory constraints": (
        lambda d: _write(
            d,
            "",
            search={
                "objectives": ["top1:max", "latency_ms@cpu_fp32:min"],
                "constraints": ["params_m <= 0.001", "params_m >= 10"],
            },
        ),
        "params_m",
    ),
    "negative latency bound": (
        lambda d: _write(
            d,
            "",
            search={
                "objectives": ["top1:max", "latency_ms@cpu_fp32:min"],
                "constraints": ["latency_ms@cpu_fp32 <= -1"],
            },
        ),
        "latency_ms@cpu_fp32",
    ),
    "objective on an unmeasured target": (
        lambda d: _write(d, "", search={"objectives": ["top1:max", "latency_ms@ort_int8:min"]}),
        "search.objectives[1]",
    ),
    "bad objective text": (
        lambda d: _write(d, "", search={"objectives": ["top1:maximum", "params_m:min"]}),
        "search.objectives[0]",
    ),
    "bad constraint text": (
        lambda d: _write(
            d,
            "",
            search={"objectives": ["top1:max", "params_m:min"], "constraints": ["params_m ~ 3"]},
        ),
        "search.constraints[0]",
    ),
    "warmup longer than training": (
        lambda d: _write(d, "", train={"epochs": 1, "batch_size": 32, "warmup_epochs": 2}),
        "train.warmup_epochs",
    ),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_bad_specs_are_refused(name: str, tmp_path: Path) -> None:
    make, named = HAND_MADE[name]
    spec_file = make(tmp_path)
    _refused(tmp_path, spec_file, named)


def test_the_spec_reference_is_current() -> None:
    from nas.spec.reference import render

    reference = Path(__file__).resolve().parents[1] / "docs" / "spec.md"
    assert reference.read_text() == render(), "run: python -m nas.spec.reference > docs/spec.md"


def test_validate_refuses_a_changed_spec_on_a_started_run(tmp_path: Path) -> None:
    """`nas validate` says what `nas run` would: a started stage's inputs differ from the spec."""
    from nas.pipeline.run_dir import INPUTS_FILE, stage_inputs
    from nas.spec.config import ExperimentSpec

    run_dir = tmp_path / "out"
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(to_toml({**BASE_SPEC, "output_dir": str(run_dir)}))
    started = ExperimentSpec.from_toml(spec_file)
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / INPUTS_FILE).write_text(
        json.dumps({"inputs": stage_inputs(started, "train")})
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["validate", str(spec_file)]) == 0  # the same spec is fine
    changed = {**BASE_SPEC, "output_dir": str(run_dir), "train": {"epochs": 3, "batch_size": 32}}
    spec_file.write_text(to_toml(changed))
    _refused(tmp_path, spec_file, "train.epochs: 1 → 3")
