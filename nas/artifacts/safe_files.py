"""Reading an artifact directory without trusting it.

Every loader (predictors, bundles, checkpoints, exported subnets) goes through these checks, so
they refuse the same things with the same words: a path named by the artifact must resolve
inside the artifact's directory, nothing pickle-like is opened, and a JSON index that is not a
complete JSON object with fields of the right types is an :class:`IncompatibleArtifactError`
naming the file and the key. Nothing here imports torch, so the predictor service stays light.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickletools
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import IncompatibleArtifactError, StorageError, UnsafeFileError

PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".dill")
"""File names refused in an artifact directory whatever they hold."""

HEAD_BYTES = 1 << 16
"""How much of each file the pickle check parses."""

MAX_JSON_BYTES = 64 << 20
"""Larger JSON index files are refused rather than parsed."""


# -- paths ----------------------------------------------------------------------------------------
def resolve_inside(directory: Path, value: object, *, file: Path, key: str) -> Path:
    """The file ``value`` names, resolved (symlinks, ``..``) and required to lie in ``directory``.

    ``value`` was read from ``file`` under ``key``; both are named when it is refused.

    Raises:
        UnsafeFileError: ``value`` is absolute or resolves outside ``directory`` (or to it).
        IncompatibleArtifactError: ``value`` is not a non-empty string.
    """
    if not isinstance(value, str) or not value or "\x00" in value:
        raise IncompatibleArtifactError(
            f"{file}: {key} must be a non-empty relative path, got {value!r}"
        )
    if Path(value).is_absolute():
        raise UnsafeFileError(
            f"{file}: {key}={value!r} is an absolute path; an artifact may only name files "
            f"inside {directory}"
        )
    root = directory.resolve()
    resolved = (root / value).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafeFileError(
            f"{file}: {key}={value!r} resolves to {resolved}, outside {root}; an artifact may "
            "only name files inside its own directory"
        )
    return resolved


# -- pickles --------------------------------------------------------------------------------------
def looks_like_pickle(head: bytes, *, complete: bool = True) -> bool:
    """Whether ``head`` parses as a pickle opcode stream (parsed only, never executed).

    Args:
        head: The first bytes of a file.
        complete: ``head`` is the whole file; otherwise running out of bytes after many valid
            opcodes also counts as a pickle.
    """
    count = 0
    with warnings.catch_warnings():  # STRING arguments of random bytes warn on escape decoding
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            for opcode, _, _ in pickletools.genops(io.BytesIO(head)):
                count += 1
                if opcode.name == "STOP":
                    return count >= 2
        except Exception:  # any parse error of untrusted bytes ends the stream
            pass
    return not complete and count >= 16


def _npy_has_objects(stream: io.BufferedIOBase | io.BytesIO) -> bool:
    """Whether an ``.npy`` stream's header declares an object dtype (stored as a pickle)."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        _, _, dtype = reader(stream)
    except Exception:  # a malformed header is for the loader to report
        return False
    return bool(dtype.hasobject)


def pickle_content(path: Path) -> str | None:
    """How the regular file ``path`` holds pickled data, or ``None`` if it does not."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        complete = not fh.read(1)
    if head[:6] == b"\x93NUMPY":
        objects = _npy_has_objects(io.BytesIO(head))
        return "a numpy array of Python objects, stored pickled" if objects else None
    if head[:4] == b"PK\x03\x04":
        return zip_pickle_content(path)
    if looks_like_pickle(head, complete=complete):
        return "its bytes are pickle opcodes"
    return None


def zip_pickle_content(path: Path | io.BytesIO) -> str | None:
    """How a zip (torch.save, npz, skops; a file or its bytes) holds pickled data, or ``None``."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = member.filename
                if name.lower().endswith(PICKLE_SUFFIXES):
                    return f"a zip holding the pickle {name!r}, the torch.save format"
                if name.lower().endswith(".npy"):
                    with archive.open(member) as stream:
                        if _npy_has_objects(io.BytesIO(stream.read(HEAD_BYTES))):
                            return f"a zip holding {name!r}, an array of Python objects"
    except Exception:  # damaged or encrypted: its loader says what is wrong
        return None
    return None


def refuse_unsafe_files(directory: Path, *, loads: str) -> None:
    """Raise :class:`UnsafeFileError` naming the first pickle-like file in ``directory``.

    Refused: names ending in :data:`PICKLE_SUFFIXES`, and regular files whose content is a
    pickle (any name), an object-dtype ``.npy`` or a zip holding either. Symlinks are judged by
    name only: loaders open only the files an artifact names, through :func:`resolve_inside`.

    Args:
        directory: The artifact directory (not searched recursively).
        loads: What the loader accepts, for the message (e.g. ``"safetensors and JSON"``).
    """
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise IncompatibleArtifactError(
            f"{directory} cannot be listed: {exc.strerror or exc}"
        ) from exc
    for entry in entries:
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            reason = f"looks like a pickle ({entry.suffix})"
        elif entry.is_symlink() or not entry.is_file():
            continue
        else:
            try:
                found = pickle_content(entry)
            except OSError as exc:
                raise IncompatibleArtifactError(
                    f"{entry} cannot be read: {exc.strerror or exc}"
                ) from exc
            if found is None:
                continue
            reason = f"is a pickle ({found})"
        raise UnsafeFileError(
            f"{entry} {reason}; {directory} is loaded from {loads} only and pickles are never "
            "unpickled, so the directory is refused"
        )


# -- JSON -----------------------------------------------------------------------------------------
def read_json_object(path: Path, *, what: str) -> dict[str, Any]:
    """Parse the JSON object in ``path``; anything else names the file and what is wrong.

    Raises:
        IncompatibleArtifactError: unreadable, too large, not UTF-8, not valid (or truncated)
            JSON, or not an object.
    """
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise IncompatibleArtifactError(
                f"{path} is {size} bytes, more than the {MAX_JSON_BYTES} a {what} may have"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise IncompatibleArtifactError(
            f"{path} cannot be read ({exc.strerror or exc}): not a {what}"
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IncompatibleArtifactError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}): not a {what}"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IncompatibleArtifactError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
            f"truncated?): not a {what}"
        ) from exc
    except RecursionError as exc:
        raise IncompatibleArtifactError(f"{path} nests JSON too deeply: not a {what}") from exc
    if not isinstance(data, dict):
        raise IncompatibleArtifactError(
            f"{path} holds a JSON {type(data).__name__}, not the object a {what} is"
        )
    return data


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    options = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in options)


def require(
    data: Mapping[str, Any],
    key: str,
    kinds: type | tuple[type, ...],
    *,
    file: Path,
    prefix: str = "",
) -> Any:
    """``data[key]`` if present and of one of ``kinds`` (``bool`` is not an ``int`` here).

    Raises:
        IncompatibleArtifactError: naming ``file``, ``prefix + key`` and what is wrong.
    """
    name = f"{prefix}{key}"
    if not isinstance(data, Mapping):
        raise IncompatibleArtifactError(
            f"{file}: {prefix.rstrip('.') or 'the top level'} must be an object, "
            f"got {type(data).__name__}"
        )
    if key not in data:
        raise IncompatibleArtifactError(f"{file}: key {name!r} is missing")
    value = data[key]
    options = kinds if isinstance(kinds, tuple) else (kinds,)
    if float in options and int not in options:
        options = (*options, int)
    wrong_bool = isinstance(value, bool) and bool not in options
    if wrong_bool or not isinstance(value, options):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise IncompatibleArtifactError(
            f"{file}: {name} must be {_kind_names(kinds)}, got {type(value).__name__} {shown}"
        )
    return value


def require_count(data: Mapping[str, Any], key: str, *, file: Path, prefix: str = "") -> int:
    """``data[key]`` if it is a non-negative integer (epochs, steps, sizes)."""
    value = int(require(data, key, int, file=file, prefix=prefix))
    if value < 0:
        raise IncompatibleArtifactError(
            f"{file}: {prefix}{key}={value} must be a non-negative integer"
        )
    return value


def require_sha256(data: Mapping[str, Any], key: str, *, file: Path, prefix: str = "") -> str:
    """``data[key]`` if it is a lowercase hex SHA-256 digest."""
    value = str(require(data, key, str, file=file, prefix=prefix))
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise IncompatibleArtifactError(
            f"{file}: {prefix}{key}={value[:70]!r} is not a sha256 digest (64 hex digits)"
        )
    return value


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or all of ``data``.

    A temporary file in the same directory is written, flushed to disk and renamed over
    ``path``. On failure the temporary file is removed; an ``OSError`` (a full disk, a file size
    limit) becomes a :class:`~nas.errors.StorageError` whose one line names ``path`` and the
    reason, e.g. ``no space left on device writing .../model.safetensors``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        code = exc.errno if exc.errno is not None else errno.EIO
        error = StorageError(f"{(exc.strerror or os.strerror(code)).lower()} writing {path}")
        error.errno = code
        raise error from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every file system lets a directory be synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
