"""Declared bounds for spec fields, and the one checker every spec dataclass runs.

Each field of a spec dataclass may carry a :class:`Rule` in its metadata (made with
:func:`spec_field`). :func:`check_fields` checks every field against its type hint (booleans are
not numbers, floats are finite, tuples hold the declared item type) and its rule (range, choices,
non-empty), so a key added with a rule is validated, documented and fuzzed without further code:
the generated bad-input tests and the spec reference read the same rules.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     lr: float = spec_field(0.1, low=0.0, low_open=True, high=10.0, doc="step size")
    ...     def __post_init__(self):
    ...         check_fields(self, "demo.")
    >>> Demo(lr=float("nan"))
    Traceback (most recent call last):
    ...
    nas.errors.ConfigError: demo.lr=nan must be a finite number
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError, format_choice_error

MAX_INT = 2**31 - 1  # the largest count any spec field accepts unless its rule says less


@dataclass(frozen=True)
class Rule:
    """Allowed values of one field (of each item, for a tuple field).

    Attributes:
        low, high: Inclusive bounds unless ``low_open`` / ``high_open``.
        choices: Allowed strings, or a function returning them (registries fill in late).
        non_empty: Strings and tuples must not be empty.
        max_items: Most items a tuple field may hold.
        doc: One line for the spec reference.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None
    non_empty: bool = False
    max_items: int | None = None
    doc: str = ""

    def allowed_choices(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe_range(self) -> str:
        """``[0, 1)``-style text of the bounds, or ``""`` when unbounded."""
        if self.low is None and self.high is None:
            return ""
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        opening = "(" if self.low_open or self.low is None else "["
        closing = ")" if self.high_open or self.high is None else "]"
        return f"{opening}{low}, {high}{closing}"


def _number(value: float) -> str:
    """Exact integers with separators (4,294,967,295), other numbers in short form."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"


def spec_field(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    **rule: Any,
) -> Any:
    """A dataclass field carrying a :class:`Rule` (``low``, ``high``, ``choices``, ``doc``...)."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"rule": Rule(**rule)}
    )


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata.get("rule", Rule())


def check_fields(obj: Any, prefix: str) -> None:
    """Check every field of dataclass ``obj`` against its hint and rule (raises ConfigError)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check_value(f"{prefix}{f.name}", getattr(obj, f.name), hints[f.name], rule_of(f))


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so one bad value stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def check_value(key: str, value: Any, hint: Any, rule: Rule) -> None:
    """Check one value; the message names ``key``, the value and what is allowed."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return
        check_value(key, value, args[0], rule)
        return
    if origin is typing.Literal:
        check_value(key, value, str, dataclasses.replace(rule, choices=typing.get_args(hint)))
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise ConfigError(f"{key}={shown(value)} must be a list")
        if rule.non_empty and not value:
            raise ConfigError(f"{key} must not be empty")
        if rule.max_items is not None and len(value) > rule.max_items:
            raise ConfigError(f"{key} has {len(value)} items; at most {rule.max_items} allowed")
        (item, *_) = typing.get_args(hint) or (Any,)
        item_rule = dataclasses.replace(rule, non_empty=False, max_items=None)
        for i, v in enumerate(value):
            check_value(f"{key}[{i}]", v, item, item_rule)
        return
    if hint is Any or origin is not None:
        is_table = origin in (Mapping, dict) or hint in (Mapping, dict)
        if is_table and not isinstance(value, Mapping):
            raise ConfigError(f"{key}={shown(value)} must be a table")
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={shown(value)} must be true or false")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={shown(value)} must be an integer")
        _check_range(key, value, rule, default_high=MAX_INT)
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}={shown(value)} must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{key}={shown(value)} must be a finite number")
        _check_range(key, value, rule, default_high=None)
        return
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={shown(value)} must be a string")
        if rule.non_empty and not value.strip():
            raise ConfigError(f"{key} must not be empty")
        allowed = rule.allowed_choices()
        if allowed is not None and value not in allowed:
            raise ConfigError(format_choice_error(key, value, allowed))
        return
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{key}={shown(value)} must be a {hint.__name__}")


def _check_range(key: str, value: float, rule: Rule, *, default_high: float | None) -> None:
    high = rule.high if rule.high is not None else default_high
    bounded = dataclasses.replace(rule, high=high)
    too_low = rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low))
    too_high = high is not None and (value > high or (rule.high_open and value == high))
    if too_low or too_high:
        raise ConfigError(f"{key}={shown(value)} must be in {bounded.describe_range()}")
