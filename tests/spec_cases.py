"""Bad spec values generated from the spec schema (``nas.spec.config.spec_schema``).

Every key's type hint and rule give its bad values: the wrong type, out of range, non-finite,
not among its choices, empty, too many items. A key added to a spec dataclass is covered here
without editing this file.
"""

from __future__ import annotations

import copy
import json
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nas.spec.config import spec_schema
from nas.spec_fields import MAX_INT, Rule

BASE_SPEC: dict[str, Any] = {
    "name": "fuzz",
    "seed": 0,
    "space": {"name": "tiny_cnn"},
    "data": {"kind": "digits"},
    "train": {"epochs": 1, "batch_size": 32},
    "ray": {"num_workers": 1},
    "targets": [{"name": "extra_target", "runtime": "torch", "precision": "fp32"}],
    "measure": {"targets": ["cpu_fp32"], "n_samples": 16},
    "predictors": {"kind": "ridge"},
    "search": {"objectives": ["top1:max", "latency_ms@cpu_fp32:min"], "budget": 10},
    "export": {"max_subnets": 2},
}


@dataclass(frozen=True)
class BadCase:
    """One spec with one bad value, and the key its error must name."""

    key: str
    value: Any
    why: str

    @property
    def named(self) -> str:
        """What the error line must contain (``targets[0]`` stands for ``targets[]``)."""
        return self.key.replace("targets[].", "targets[0]: target.")

    def spec(self, output_dir: str) -> dict[str, Any]:
        data = copy.deepcopy(BASE_SPEC)
        data["output_dir"] = output_dir
        *sections, leaf = self.key.split(".")
        node: Any = data
        for section in sections:
            node = node["targets"][0] if section == "targets[]" else node.setdefault(section, {})
        node[leaf] = self.value
        return data

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}({self.why})"


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``(type, optional)`` with ``X | None`` unwrapped and ``Literal`` seen as ``str``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _base_type(args[0])[0], True
    if origin is typing.Literal:
        return str, False
    return hint, False


def _literal_choices(hint: Any) -> tuple[str, ...] | None:
    inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for arg in inner:
        if typing.get_origin(arg) is typing.Literal:
            return typing.get_args(arg)
    return None


def _scalar_bad_values(kind: Any, rule: Rule, choices: tuple[str, ...] | None) -> Iterator:
    """``(value, why)`` pairs that a field of this scalar type and rule must refuse."""
    if kind is bool:
        yield from (("yes", "string for bool"), (1, "int for bool"), ([True], "list for bool"))
    elif kind is int:
        yield from (("7", "string for int"), (1.5, "float for int"), (True, "bool for int"))
        yield [1], "list for int"
        yield 2**63 - 1, "beyond every bound"
        if rule.low is not None:
            low = int(rule.low) + (0 if rule.low_open else -1)
            yield low, "below low"
        high = MAX_INT if rule.high is None else int(rule.high) + (0 if rule.high_open else 1)
        yield high, "above high"
    elif kind is float:
        yield from (("0.5", "string for float"), (True, "bool for float"), ([0.5], "list"))
        yield from ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"))
        if rule.low is not None:
            yield (rule.low if rule.low_open else rule.low - 0.5), "below low"
        if rule.high is not None:
            yield (rule.high if rule.high_open else rule.high * 2 + 1), "above high"
    elif kind is str:
        yield from ((7, "int for string"), (True, "bool for string"), ({"a": 1}, "table"))
        if choices or rule.choices is not None:
            yield "no_such_choice_zz", "not a choice"
        if rule.non_empty:
            yield "", "empty"


def bad_cases() -> list[BadCase]:
    """Every bad value of every key of the schema, plus an unknown key per section."""
    cases: list[BadCase] = []
    sections = set()
    for key, hint, rule, _default in spec_schema():
        if "." in key:
            sections.add(key.split(".")[0])
        kind, _optional = _base_type(hint)
        if typing.get_origin(kind) is tuple:
            (item,) = typing.get_args(kind)[:1]
            cases.append(BadCase(key, "not-a-list", "string for list"))
            cases.append(BadCase(key, 5, "int for list"))
            if rule.max_items is not None:
                cases.append(BadCase(key, ["x"] * (rule.max_items + 1), "too many items"))
            for value, why in _scalar_bad_values(item, rule, None):
                if not isinstance(value, list):
                    cases.append(BadCase(key, [value], f"item: {why}"))
            continue
        if kind is not str and typing.get_origin(kind) is not None:  # a table (Mapping)
            cases.append(BadCase(key, "wide", "string for table"))
            cases.append(BadCase(key, {"no_such_option": 1}, "unknown option"))
            continue
        if kind in (bool, int, float, str):
            for value, why in _scalar_bad_values(kind, rule, _literal_choices(hint)):
                cases.append(BadCase(key, value, why))
    for section in sorted(sections):
        cases.append(BadCase(f"{section}.no_such_key", 1, "unknown key"))
    cases.append(BadCase("no_such_top_level_key", 1, "unknown key"))
    return cases


def toml_value(value: Any) -> str:
    """TOML text of a JSON-like value (nan and inf included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a TOML basic string: UTF-8, control characters escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def to_toml(data: dict[str, Any]) -> str:
    """A spec dict as TOML: scalars first, then tables, then ``[[targets]]``."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    lines += [
        f"{k} = {toml_value(v)}" for k, v in data.items() if isinstance(v, list) and k != "targets"
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    for target in data.get("targets", []) if isinstance(data.get("targets"), list) else []:
        lines.append("[[targets]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in target.items()]
    return "\n".join(lines) + "\n"
