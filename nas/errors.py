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
    """A saved artifact cannot be loaded: malformed, truncated, or of another space or version."""


class MissingArtifactError(IncompatibleArtifactError, ConfigError):
    """The path given holds no artifact (its index file is missing).

    Both an unloadable artifact and a wrong argument, so callers catching either see it.
    """


class StorageError(OSError):
    """A write to a run directory failed (full disk, size limit); what was written before holds.

    The message is one line naming the file and the cause; the CLI prints it and exits 1.
    """


class RunStopped(Exception):
    """A run ended early because ``nas stop`` asked it to, at a point ``nas run`` resumes from.

    The message says where it stopped; the CLI prints it and exits 3.
    """


def format_choice_error(key: str, value: object, allowed: object) -> str:
    """Return the one message shape used for every bad value: ``key=value is not one of [...]``."""
    return f"{key}={value!r} is not one of {allowed!r}"
