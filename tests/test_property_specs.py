"""Hypothesis properties of experiment specs and result-store records.

Specs: strategies draw whole spec files from the spec schema (``nas.spec.config.spec_schema``,
each key's type hint and :func:`~nas.spec_fields.spec_field` rule: ``low``/``high``,
``choices``, ``non_empty``, ``max_items``) and the cross-key rules of the spec dataclasses, so
a drawn spec is valid by construction; some draws then get one bad value (from the same
schema) or an unknown key. The loader must accept a valid spec (holding the drawn values, from
TOML text and from plain data alike) and refuse a bad one with a one-line
:class:`~nas.errors.ConfigError` naming the key, never another exception. Edited TOML text
(characters cut, repeated or inserted) is accepted or refused the same way.

Records: :class:`~nas.results.Evaluation` records appended to a
:class:`~nas.results.ResultStore` reload equal (last write per key wins, history order kept);
a torn or garbage last line is skipped with a warning and cut away by the next append; a bad
line before the last is one ``ConfigError`` naming the line.

Every test is derandomized (the same examples each run) and sized to run in seconds.
"""

from __future__ import annotations

import json
import math
import tempfile
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nas.data.kinds import DATASETS_NEEDING_PATH
from nas.errors import ConfigError
from nas.measure.targets import RUNTIME_PRECISIONS, default_registry
from nas.results import SOURCES, Evaluation, ResultStore
from nas.spec.config import (
    MIN_HELD_OUT,
    MIN_TRAIN_SAMPLES,
    SECTIONS,
    ExperimentSpec,
    spec_schema,
)
from nas.spec_fields import MAX_INT, Rule
from nas.subnet import SubnetConfig
from nas.training.config import PHASES
from tests.spec_cases import BadCase, _base_type, _literal_choices, to_toml
from tests.test_spec_validation import SCALARS, _bad_scalar

PROPERTY = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SCHEMA: dict[str, tuple[Any, Rule]] = {key: (hint, rule) for key, hint, rule, _ in spec_schema()}
SCHEMA_DEFAULTS = {key: default for key, _, _, default in spec_schema()}
BUILTIN_TARGETS = tuple(default_registry().names())
NAME = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)
# Keys whose valid values the strategies below draw by hand (cross-key rules, syntax).
BY_HAND = {"name", "output_dir", "measure.targets", "search.objectives", "search.constraints"}
BY_HAND |= {f"train.{k}" for k in ("epochs", "warmup_epochs", "batch_size", "micro_batches")}
BY_HAND |= {f"train.{k}" for k in ("phases", "phase_epochs", "reorder")}
BY_HAND |= {"data.kind", "data.path", "space.options", "search.options"}


# -- valid values from the schema ---------------------------------------------------------------
def _valid_scalar(hint: Any, rule: Rule) -> st.SearchStrategy[Any]:
    """Values a key of this hint and rule accepts (``None`` for an optional key: left out)."""
    kind, optional = _base_type(hint)
    choices = _literal_choices(hint) or rule.allowed_choices()
    if kind is bool:
        values: st.SearchStrategy[Any] = st.booleans()
    elif kind is int:
        low = -MAX_INT if rule.low is None else int(rule.low) + int(rule.low_open)
        high = MAX_INT if rule.high is None else int(rule.high) - int(rule.high_open)
        values = st.integers(low, high)
    elif kind is float:
        values = st.floats(
            min_value=-1e6 if rule.low is None else rule.low,
            max_value=1e6 if rule.high is None else rule.high,
            exclude_min=rule.low_open,
            exclude_max=rule.high_open,
            allow_nan=False,
            allow_infinity=False,
        )
    elif kind is str:
        values = st.sampled_from(choices) if choices else TEXT.filter(str.strip)
    else:
        raise AssertionError(f"no strategy for {hint}")
    return st.one_of(st.none(), values) if optional else values


def _schema_keys(section: str) -> list[str]:
    return [
        key
        for key in SCHEMA
        if key.startswith(f"{section}.") and key not in BY_HAND and "[" not in key
    ]


@st.composite
def _section(draw: Callable[..., Any], section: str) -> dict[str, Any]:
    """Some keys of ``section`` with valid values; the rest keep their defaults."""
    table = {}
    for key in _schema_keys(section):
        if draw(st.booleans()):
            value = draw(_valid_scalar(*SCHEMA[key]))
            if value is not None:
                table[key.partition(".")[2]] = value
    return table


@st.composite
def _train(draw: Callable[..., Any]) -> dict[str, Any]:
    """The train table, within ``TrainConfig``'s cross-key rules."""
    table = draw(_section("train"))
    epochs = draw(st.integers(1, 60))
    table["epochs"] = epochs
    if draw(st.booleans()):
        table["warmup_epochs"] = draw(st.integers(0, epochs))
    batch = draw(st.integers(1, 4096))
    table["batch_size"] = batch
    divisors = [d for d in range(1, min(batch, 1024) + 1) if batch % d == 0]
    table["micro_batches"] = draw(st.sampled_from(divisors))
    phases = [p for p in PHASES if draw(st.booleans())][:epochs]
    if phases:
        table["phases"] = phases
        budget = epochs - len(phases)  # each phase at least 1 epoch, their sum <= epochs
        extra = draw(st.lists(st.integers(0, budget), min_size=len(phases), max_size=len(phases)))
        while sum(extra) > budget:
            extra[extra.index(max(extra))] //= 2
        table["phase_epochs"] = [1 + e for e in extra]
    if "largest" in phases:
        table["reorder"] = draw(st.sampled_from(["none", "activations", "weights"]))
    return table


@st.composite
def _targets(draw: Callable[..., Any]) -> list[dict[str, Any]]:
    """User hardware targets: new names, runtime and precision that go together."""
    names = draw(
        st.lists(
            st.from_regex(r"[a-z_][a-z0-9_.\-]{0,12}", fullmatch=True).filter(
                lambda n: n not in BUILTIN_TARGETS
            ),
            max_size=2,
            unique=True,
        )
    )
    targets = []
    for name in names:
        target: dict[str, Any] = {"name": name}
        runtime = draw(st.sampled_from(sorted(RUNTIME_PRECISIONS)))
        target["runtime"] = runtime
        target["precision"] = draw(st.sampled_from(RUNTIME_PRECISIONS[runtime]))
        for leaf in ("threads", "batch_size", "resolution", "resource"):
            value = draw(_valid_scalar(*SCHEMA[f"targets[].{leaf}"]))
            if value is not None and draw(st.booleans()):
                target[leaf] = value
        targets.append(target)
    return targets


def _bound() -> st.SearchStrategy[str]:
    return st.floats(-1e9, 1e9, allow_nan=False).map(repr)


@st.composite
def valid_specs(draw: Callable[..., Any]) -> dict[str, Any]:
    """A spec dict the loader must accept (also with ``measure.n_samples`` too small: see
    :func:`expected_error`)."""
    data: dict[str, Any] = {}
    name = draw(NAME)
    data["name"] = name
    data["output_dir"] = draw(st.sampled_from([f"runs/{name}", "out", "/tmp/nas out/ü"]))
    if draw(st.booleans()):
        data["seed"] = draw(_valid_scalar(*SCHEMA["seed"]))
    space = draw(_section("space"))
    data["space"] = space
    data_table = draw(_section("data"))
    data_table["kind"] = draw(_valid_scalar(*SCHEMA["data.kind"]))
    if data_table["kind"] in DATASETS_NEEDING_PATH or draw(st.booleans()):
        data_table["path"] = draw(TEXT.filter(str.strip))
    data["data"] = data_table
    data["train"] = draw(_train())
    data["ray"] = draw(_section("ray"))
    targets = draw(_targets())
    if targets:
        data["targets"] = targets
    measure = draw(_section("measure"))
    known = [*BUILTIN_TARGETS, *(t["name"] for t in targets)]
    measured = draw(st.lists(st.sampled_from(known), min_size=1, max_size=4, unique=True))
    measure["targets"] = measured
    data["measure"] = measure
    data["predictors"] = draw(_section("predictors"))
    search = draw(_section("search"))
    metrics = ["top1", "macs", "params", *(f"latency_ms@{t}" for t in measured)]
    chosen = draw(st.lists(st.sampled_from(metrics), min_size=2, max_size=5, unique=True))
    search["objectives"] = [f"{m}:{draw(st.sampled_from(['min', 'max']))}" for m in chosen]
    constraints = draw(
        st.lists(st.tuples(st.sampled_from(metrics), st.sampled_from(["<=", ">="]), _bound()))
    )
    search["constraints"] = [f"{m} {op} {b}" for m, op, b in constraints[:4]]
    data["search"] = search
    data["export"] = draw(_section("export"))
    return data


def expected_error(data: dict[str, Any]) -> str | None:
    """The key a valid-by-construction spec is refused for: the predictors' split only."""
    n = data["measure"].get("n_samples", SCHEMA_DEFAULTS["measure.n_samples"])
    fraction = data["predictors"].get("test_fraction", SCHEMA_DEFAULTS["predictors.test_fraction"])
    held_out = math.ceil(n * fraction)
    if n - held_out < MIN_TRAIN_SAMPLES or held_out < MIN_HELD_OUT:
        return "measure.n_samples"
    return None


@st.composite
def specs(draw: Callable[..., Any]) -> tuple[dict[str, Any], str | None]:
    """``(spec dict, key its error must name or None)``: mostly valid, a quarter with a bad value,
    a few with an unknown key."""
    data = draw(valid_specs())
    kind = draw(st.sampled_from(["valid"] * 6 + ["bad"] * 2 + ["unknown"]))
    if kind == "valid":
        return data, expected_error(data)
    if kind == "unknown":
        section = draw(st.sampled_from(["", *SECTIONS]))
        leaf = draw(IDENT.filter(lambda k: k not in _all_leaves()))
        if section:
            data.setdefault(section, {})[leaf] = 1
            return data, f"{section}.{leaf}"
        data[leaf] = 1
        return data, leaf
    key, hint, rule = draw(st.sampled_from(SCALARS))
    kind_of, _ = _base_type(hint)
    if typing.get_origin(kind_of) is tuple:
        (item,) = typing.get_args(kind_of)[:1]
        value: Any = [draw(_bad_scalar(item, rule, None))]
    else:
        value = draw(_bad_scalar(kind_of, rule, _literal_choices(hint)))
    case = BadCase(key, value, "hypothesis")
    if key.startswith("targets[]."):
        data["targets"] = [{"name": "bad_target_zz"}, *data.get("targets", [])]
    _set(data, key, value)
    return data, case.named


def _all_leaves() -> set[str]:
    return {key.rpartition(".")[2] for key in SCHEMA} | set(SECTIONS) | {"targets"}


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node: Any = data
    for section in sections:
        node = node["targets"][0] if section == "targets[]" else node.setdefault(section, {})
    node[leaf] = value


def _load(data: dict[str, Any]) -> tuple[ExperimentSpec | None, str | None]:
    """The spec from TOML text and from plain data: the same answer, or the same refusal."""
    answers = []
    for load in (lambda: ExperimentSpec.from_toml_text(to_toml(data)), lambda: _from_dict(data)):
        try:
            answers.append((load(), None))
        except ConfigError as exc:
            answers.append((None, str(exc)))
    (spec, error), (spec_again, error_again) = answers
    assert error == error_again, (error, error_again)
    assert (spec is None) == (spec_again is None)
    return spec, error


def _from_dict(data: dict[str, Any]) -> ExperimentSpec:
    return ExperimentSpec.from_dict(json.loads(json.dumps(data)))  # a fresh copy, as TOML gives


def _holds(spec: ExperimentSpec, data: dict[str, Any]) -> None:
    """Every drawn value is the spec's (lists as tuples)."""
    for key, value in data.items():
        if key == "targets":
            assert [
                {k: t.to_dict()[k] for k in drawn}
                for t, drawn in zip(spec.targets, value, strict=True)
            ] == value
        elif isinstance(value, dict):
            section = getattr(spec, key)
            for leaf, item in value.items():
                got = section.options[leaf] if key == "train" else getattr(section, leaf)
                assert _plain(got) == item, (f"{key}.{leaf}", got, item)
        else:
            assert getattr(spec, key) == value, (key, getattr(spec, key), value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _names(message: str, key: str) -> None:
    assert "\n" not in message, message
    assert key in message, f"{key!r} not in {message!r}"


@settings(PROPERTY, max_examples=300)
@given(drawn=specs())
def test_specs_are_accepted_or_refused_naming_the_key(drawn: tuple[dict[str, Any], Any]) -> None:
    data, key = drawn
    spec, error = _load(data)
    event("accepted" if error is None else "refused")
    if key is None:
        assert error is None, error
        assert spec is not None
        _holds(spec, data)
    else:
        assert error is not None, f"accepted although {key} is bad"
        _names(error, key)


# What a refusal of edited text names: a key, a section, or the TOML syntax.
MESSAGE_KEYS = {k.replace("targets[].", "target.") for k in SCHEMA} | set(SECTIONS) | {"targets"}


@st.composite
def edited_toml(draw: Callable[..., Any]) -> str:
    """A valid spec's TOML with a few characters cut, repeated or inserted."""
    text = to_toml(draw(valid_specs()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["cut", "repeat", "insert"]))
        if edit == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        elif edit == "repeat":
            text = text[:at] + text[at : at + 8] * 2 + text[at + 8 :]
        else:
            text = text[:at] + draw(st.sampled_from(list('="[]{}.,#\n\\ 0-9aé'))) + text[at:]
    return text


@settings(PROPERTY, max_examples=300)
@given(text=edited_toml())
def test_edited_toml_is_accepted_or_one_config_error(text: str) -> None:
    try:
        ExperimentSpec.from_toml_text(text)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message, message
        assert message.startswith("invalid TOML") or any(k in message for k in MESSAGE_KEYS), (
            message
        )


def test_a_drawn_spec_file_loads_like_its_text(tmp_path: Path) -> None:
    """``from_toml`` (a file) answers as ``from_toml_text``, prefixing refusals with the path."""
    good = {"name": "p", "space": {"name": "tiny_cnn"}, "measure": {"n_samples": 30}}
    bad = {**good, "seed": -1}
    for data in (good, bad):
        path = tmp_path / "spec.toml"
        path.write_text(to_toml(data))
        try:
            spec = ExperimentSpec.from_toml(path)
        except ConfigError as exc:
            assert data is bad and str(exc).startswith(f"{path}: seed=-1"), exc
        else:
            assert data is good and spec.name == "p" and spec.measure.n_samples == 30


# -- result-store records -----------------------------------------------------------------------
CONFIG_VALUES = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
METRICS = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.floats(allow_nan=True, allow_infinity=True),
    max_size=4,
)


@st.composite
def evaluations(draw: Callable[..., Any], configs: list[SubnetConfig]) -> Evaluation:
    return Evaluation(
        config=draw(st.sampled_from(configs)),
        target=draw(st.sampled_from(["cpu_fp32", "ort_int8", "phone ü", ""])),
        metrics=draw(METRICS),
        source=draw(st.sampled_from(SOURCES)),
        timestamp=draw(st.floats(0, 2e9)),
    )


@st.composite
def histories(draw: Callable[..., Any]) -> list[list[Evaluation]]:
    """Batches of evaluations (each an ``extend``), over a few configs so keys repeat."""
    configs = draw(
        st.lists(
            st.dictionaries(st.text(min_size=1, max_size=8), CONFIG_VALUES, max_size=4).map(
                SubnetConfig.from_dict
            ),
            min_size=1,
            max_size=4,
        )
    )
    return draw(st.lists(st.lists(evaluations(configs), min_size=1, max_size=4), max_size=5))


def _records(store: ResultStore) -> list[str]:
    """The store's deduplicated records as JSON (NaN compares equal to itself here)."""
    return [json.dumps(e.to_record(), sort_keys=True) for e in store]


def _expected(batches: list[list[Evaluation]]) -> list[str]:
    latest: dict[tuple[str, str, str], Evaluation] = {}
    for batch in batches:
        for e in batch:
            latest[e.key] = e
    return [json.dumps(e.to_record(), sort_keys=True) for e in latest.values()]


@settings(PROPERTY, max_examples=150)
@given(batches=histories())
def test_appended_records_reload_equal(batches: list[list[Evaluation]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.jsonl"
        store = ResultStore(path)
        for batch in batches:
            store.extend(batch)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a clean file loads without a torn-line warning
            reloaded = ResultStore(path)
        assert _records(reloaded) == _records(store) == _expected(batches)
        lines = path.read_bytes().splitlines() if path.exists() else []
        assert len(lines) == sum(len(b) for b in batches)  # the file keeps the history


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.text(min_size=1, max_size=40)
    .map(lambda t: t.replace("\n", "").replace("\r", "").encode())
    .filter(bool),
    # a record cut short, as a writer killed mid-write leaves it
    st.integers(1, 60).map(lambda n: b'{"config_key":"x","config":{"a":1},"target":"t"'[:n]),
    st.sampled_from(
        [
            b"[" * 5000,  # nested past the JSON decoder's recursion limit
            b'{"config":{},"target":"t","metrics":{"m":1' + b"0" * 400 + b"}}",  # int -> float
            b'{"config":{},"target":"t","metrics":{"m":1.0},"timestamp":9' + b"9" * 400 + b"}",
            b'{"config":[1],"target":"t","metrics":{}}',
            b'{"config":{},"target":"t","metrics":{},"source":"guessed"}',
            b"null",
            b'"a string"',
        ]
    ),
)


def _stored(folder: Path, batches: list[list[Evaluation]]) -> Path:
    """A result store in ``folder`` written one batch at a time, as a run appends."""
    path = folder / "results.jsonl"
    store = ResultStore(path)
    for batch in batches:
        store.extend(batch)
    return path


@settings(PROPERTY, max_examples=150)
@given(batches=histories(), garbage=GARBAGE, newline=st.booleans())
def test_a_torn_last_line_is_skipped_then_cut_away(
    batches: list[list[Evaluation]], garbage: bytes, newline: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _stored(Path(folder), batches)
        clean = path.read_bytes() if path.exists() else b""
        tail = garbage + (b"\n" if newline else b"")
        path.write_bytes(clean + tail)
        is_record = _is_record(tail)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reloaded = ResultStore(path)
        torn = [w for w in caught if "torn last record" in str(w.message)]
        assert len(torn) == (0 if is_record else 1), [str(w.message) for w in caught]
        if is_record:
            return
        assert _records(reloaded) == _expected(batches)
        extra = Evaluation(SubnetConfig.from_dict({"after": 1}), "cpu_fp32", {"m": 1.0})
        reloaded.append(extra)
        line = json.dumps(extra.to_record(), separators=(",", ":")) + "\n"
        assert path.read_bytes() == clean + line.encode()  # the torn tail is gone
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = ResultStore(path)
        assert _records(again) == [*_expected(batches), *_records_of([extra])]


@settings(PROPERTY, max_examples=100)
@given(batches=histories().filter(bool), garbage=GARBAGE)
def test_a_bad_line_before_the_last_is_one_error_naming_it(
    batches: list[list[Evaluation]], garbage: bytes
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _stored(Path(folder), batches)
        lines = path.read_bytes().splitlines(keepends=True)
        if _is_record(garbage + b"\n"):
            return
        at = len(lines) // 2
        path.write_bytes(b"".join([*lines[:at], garbage + b"\n", *lines[at:]]))
        with pytest.raises(ConfigError) as refused:
            ResultStore(path)
        message = str(refused.value)
        assert message.startswith(f"{path}:{at + 1} is not a valid record"), message
        assert "\n" not in message


def _is_record(line: bytes) -> bool:
    """Whether ``line`` loads as a complete record (then it is no torn line)."""
    if not line.endswith(b"\n"):
        return False
    try:
        Evaluation.from_record(json.loads(line))
    except Exception:
        return False
    return True


def _records_of(evaluations: list[Evaluation]) -> list[str]:
    return [json.dumps(e.to_record(), sort_keys=True) for e in evaluations]
