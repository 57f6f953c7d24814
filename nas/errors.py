"""Exceptions raised by the platform.

Validation raises these (never ``assert``) so that messages survive ``python -O`` and name the key,
the allowed values and the offending value.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names key, allowed values and value."""


class UnsafeFileError(ValueError):
    """A file is not in a format the platform loads safely (for example, a pickle)."""


class IncompatibleArtifactError(ValueError):
    """A saved artifact was produced for another search space or incompatible library versions."""


def format_choice_error(key: str, value: object, allowed: object) -> str:
    """Return the one message shape used for every bad value: ``key=value is not one of [...]``."""
    return f"{key}={value!r} is not one of {allowed!r}"
