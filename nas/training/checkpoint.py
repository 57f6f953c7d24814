"""Training checkpoints in safe formats only: safetensors tensors plus one JSON state file.

A checkpoint directory holds ``model.safetensors`` (supernet weights), ``optimizer.safetensors``
(optimizer tensors and the torch RNG state) and ``state.json`` (spec, epoch, step, optimizer
hyper-parameters, scheduler state, metrics, and the path, size and sha256 of both tensor
files). Every file is written atomically (temporary file, fsync, rename) and ``state.json``
last, so a directory counts as a checkpoint only once all of it is on disk, and a tensor file
damaged later (a truncated copy, a full disk) no longer matches its manifest.

Nothing is unpickled: a pickle-like file in the directory (``*.pt``, ``*.pth``, ``*.pkl``, or any
file whose bytes are a pickle) is refused with :class:`~nas.errors.UnsafeFileError`; a damaged,
incomplete or malformed checkpoint with :class:`~nas.errors.IncompatibleArtifactError`.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

import search_spaces
from nas.artifacts.export import load_tensors_into, read_safetensors, write_bytes_atomic
from nas.artifacts.safe_files import (
    HEAD_BYTES,
    looks_like_pickle,
    read_json_object,
    refuse_unsafe_files,
    require,
    require_count,
    require_sha256,
    resolve_inside,
)
from nas.errors import (
    ConfigError,
    IncompatibleArtifactError,
    MissingArtifactError,
    UnsafeFileError,
)
from nas.space import SearchSpace

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RAW_PREFIX = "raw."  # trained weights in the optimizer file when the model file holds an EMA
STATE_FILE = "state.json"
FORMAT = "nas-supernet-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)
"""Version 1 (no file manifest) loads when its safetensors files are structurally complete."""

LOADS = f"{MODEL_FILE}, {OPTIMIZER_FILE} and {STATE_FILE}"
_TENSOR_FILES: dict[str, str] = {"model": MODEL_FILE, "optimizer": OPTIMIZER_FILE}
_OPTIMIZER_KEY = re.compile(r"state\.(\d+)\.(.+)")
_Record = tuple[Path, str | None, int | None]
"""A tensor file of a checkpoint: resolved path, recorded sha256 and size (``None``: v1)."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: tensors and the JSON state."""

    path: Path
    model: dict[str, Tensor]
    optimizer: dict[str, Tensor]
    state: dict[str, Any]
    files: Mapping[str, Path] = field(default_factory=dict)
    """Resolved tensor files by role (``model``, ``optimizer``)."""

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return int(self.state["epoch"])


def _tensor_bytes(tensors: Mapping[str, Tensor]) -> bytes:
    return safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def _file_record(path: Path, data: bytes) -> dict[str, Any]:
    return {"path": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        plain[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                plain[str(index)][name] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def optimizer_state_dict(tensors: Mapping[str, Tensor], plain: Mapping[str, Any]) -> dict:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    space: SearchSpace,
    epoch: int,
    global_step: int,
    train_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    metrics: Mapping[str, Any] | None = None,
    model_tensors: Mapping[str, Tensor] | None = None,
    raw_tensors: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory: every file atomically, ``state.json`` (the manifest) last.

    ``model_tensors`` replace ``model.state_dict()`` as the supernet's weights (a weight
    average); the trained weights then travel as ``raw_tensors`` (``raw.<name>`` in the
    optimizer file), which only a resume reads.

    Raises:
        StorageError: a file could not be written (an ``OSError``; its one line names the file
            and says why, e.g. no space left on device); no partial file is left under a final
            name, and the directory is no checkpoint until a later save completes.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATE_FILE).unlink(missing_ok=True)  # unfinished until the new manifest is written
    model_bytes = _tensor_bytes(model.state_dict() if model_tensors is None else model_tensors)
    write_bytes_atomic(out / MODEL_FILE, model_bytes)
    opt_tensors, opt_plain = optimizer_tensors(optimizer) if optimizer else ({}, None)
    raw = {f"{RAW_PREFIX}{k}": v for k, v in (raw_tensors or {}).items()}
    opt_bytes = _tensor_bytes({**opt_tensors, **raw, "rng.torch": torch.get_rng_state()})
    write_bytes_atomic(out / OPTIMIZER_FILE, opt_bytes)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "global_step": global_step,
        "search_space": search_spaces.describe(space),
        "train_config": dict(train_config),
        "optimizer": opt_plain,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "metrics": dict(metrics or {}),
        "torch_version": torch.__version__,
        "files": {
            "model": _file_record(out / MODEL_FILE, model_bytes),
            "optimizer": _file_record(out / OPTIMIZER_FILE, opt_bytes),
        },
    }
    text = json.dumps(state, indent=2, default=_json_default)
    write_bytes_atomic(out / STATE_FILE, text.encode("utf-8"))
    return out


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON state")


def _read_state(directory: Path) -> tuple[dict[str, Any], dict[str, _Record]]:
    """The validated ``state.json`` and, per tensor file, its resolved path, sha256 and size."""
    state_path = directory / STATE_FILE
    state = read_json_object(state_path, what="checkpoint state")
    if state.get("format") != FORMAT:
        raise IncompatibleArtifactError(
            f"{state_path}: format {state.get('format')!r} != {FORMAT!r}"
        )
    version = require(state, "format_version", int, file=state_path)
    if version not in READABLE_VERSIONS:
        raise IncompatibleArtifactError(
            f"{state_path}: format_version={version!r} is not one of {list(READABLE_VERSIONS)}"
        )
    require_count(state, "epoch", file=state_path)
    require_count(state, "global_step", file=state_path)
    described = require(state, "search_space", dict, file=state_path)
    require(described, "name", str, file=state_path, prefix="search_space.")
    require(described, "options", dict, file=state_path, prefix="search_space.")
    require(described, "fingerprint", str, file=state_path, prefix="search_space.")
    require(state, "train_config", dict, file=state_path)
    require(state, "metrics", dict, file=state_path)
    require(state, "scheduler", (dict, type(None)), file=state_path)
    plain = require(state, "optimizer", (dict, type(None)), file=state_path)
    if plain is not None:
        entries = require(plain, "state", dict, file=state_path, prefix="optimizer.")
        bad = [k for k, v in entries.items() if not k.isdigit() or not isinstance(v, dict)]
        if bad:
            raise IncompatibleArtifactError(
                f"{state_path}: optimizer.state keys must be parameter indices mapping to "
                f"objects; bad: {bad[:5]}"
            )
        groups = require(plain, "param_groups", list, file=state_path, prefix="optimizer.")
        for i, group in enumerate(groups):
            params = require(
                group, "params", list, file=state_path, prefix=f"optimizer.param_groups[{i}]."
            )
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in params):
                raise IncompatibleArtifactError(
                    f"{state_path}: optimizer.param_groups[{i}].params must be integers"
                )
    records: dict[str, _Record] = {}
    if version == 1:
        for role, name in _TENSOR_FILES.items():
            records[role] = (directory / name, None, None)
        return state, records
    files = require(state, "files", dict, file=state_path)
    for role in _TENSOR_FILES:
        prefix = f"files.{role}."
        entry = require(files, role, dict, file=state_path, prefix="files.")
        location = resolve_inside(
            directory,
            require(entry, "path", str, file=state_path, prefix=prefix),
            file=state_path,
            key=f"{prefix}path",
        )
        sha256 = require_sha256(entry, "sha256", file=state_path, prefix=prefix)
        size = require_count(entry, "size", file=state_path, prefix=prefix)
        records[role] = (location, sha256, size)
    return state, records


def _read_tensor_file(path: Path, sha256: str | None, size: int | None) -> dict[str, Tensor]:
    if not path.is_file():
        raise IncompatibleArtifactError(f"{path} is missing: not a complete checkpoint")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise IncompatibleArtifactError(
            f"{path} is {actual} bytes, {STATE_FILE} records {size} "
            f"({'truncated' if actual < size else 'grown'} after saving)"
        )
    return read_safetensors(path, sha256=sha256)


def _check_optimizer_tensors(tensors: Mapping[str, Tensor], *, file: Path) -> None:
    for key, value in tensors.items():
        if key == "rng.torch":
            if value.dtype != torch.uint8 or value.dim() != 1:
                raise IncompatibleArtifactError(
                    f"{file}: tensor 'rng.torch' must be a 1-D uint8 RNG state, got "
                    f"{value.dtype} {list(value.shape)}"
                )
        elif not _OPTIMIZER_KEY.fullmatch(key) and not key.startswith(RAW_PREFIX):
            raise IncompatibleArtifactError(
                f"{file}: tensor {key!r} is neither 'rng.torch', 'state.<index>.<name>' nor "
                f"'{RAW_PREFIX}<weight>'"
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory after verifying every file of it.

    Raises:
        UnsafeFileError: a pickle-like file in the directory (or given as the path), or a tensor
            file named outside the directory.
        IncompatibleArtifactError: no ``state.json`` (:class:`~nas.errors.MissingArtifactError`),
            a malformed one (missing keys, wrong types, negative epoch, another version), or a
            tensor file that is missing, truncated, malformed or not the one the manifest
            records.
    """
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        if head[:4] == b"PK\x03\x04" or looks_like_pickle(head, complete=False):
            raise UnsafeFileError(
                f"{path} is a pickle; checkpoints are loaded from safetensors only and pickles "
                "are never unpickled (re-save the weights with safetensors.torch.save_file)"
            )
        raise IncompatibleArtifactError(
            f"{path} is a file; a checkpoint is a directory with {STATE_FILE}"
        )
    if path.is_dir():
        refuse_unsafe_files(path, loads=LOADS)
    if not (path / STATE_FILE).is_file():
        raise MissingArtifactError(f"{path} is not a finished checkpoint: {STATE_FILE} is missing")
    state, records = _read_state(path)
    model = _read_tensor_file(*records["model"])
    optimizer = _read_tensor_file(*records["optimizer"])
    _check_optimizer_tensors(optimizer, file=records["optimizer"][0])
    return Checkpoint(
        path=path,
        model=model,
        optimizer=optimizer,
        state=state,
        files={role: record[0] for role, record in records.items()},
    )


def load_supernet(
    path: str | Path, *, space: SearchSpace | None = None
) -> tuple[nn.Module, Checkpoint]:
    """A :class:`~nas.supernets.base.Supernet` with the checkpoint's weights, and the checkpoint.

    Raises:
        IncompatibleArtifactError: ``space`` differs from the space the checkpoint was trained
            on, or a tensor does not fit the supernet (the message names it).
    """
    from nas.supernets import family_of

    checkpoint = load_checkpoint(path)
    trained_on = checkpoint.state["search_space"]
    if space is None:
        try:
            space = search_spaces.rebuild(trained_on, artifact=str(path))
        except IncompatibleArtifactError:
            raise
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise IncompatibleArtifactError(
                f"{Path(path) / STATE_FILE}: search_space does not rebuild: {exc}"
            ) from exc
    elif space.fingerprint() != trained_on["fingerprint"]:
        raise IncompatibleArtifactError(
            f"{path}: trained on search space {trained_on['name']!r} "
            f"(fingerprint {trained_on['fingerprint']}), asked to load into {space.name!r} "
            f"(fingerprint {space.fingerprint()})"
        )
    # what Supernet(space) builds, typed as the family's class
    supernet = family_of(space).supernet_class(space)
    load_tensors_into(
        supernet, checkpoint.model, file=checkpoint.files.get("model", Path(path) / MODEL_FILE)
    )
    return supernet, checkpoint


def _recorded_epoch(state_path: Path) -> tuple[bool, float]:
    """Whether ``state_path`` claims to be a checkpoint's state, and its epoch (inf if unknown).

    A file that parses but is of another format is not a checkpoint; one that does not parse is
    a broken checkpoint, tried (and reported) first.
    """
    try:
        state = json.loads(state_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return True, float("inf")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return False, 0.0
    epoch = state.get("epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return True, float(epoch)
    return True, float("inf")


def latest_checkpoint(root: str | Path) -> Path | None:
    """The verified checkpoint with the most completed epochs anywhere below ``root``.

    Newer checkpoints that fail verification (a truncated tensor file, a pickle beside them, a
    malformed state) are skipped and reported in one :class:`RuntimeWarning` line.
    """
    root = Path(root)
    if not root.exists():
        return None
    candidates: list[tuple[float, float, Path]] = []
    for state_path in root.rglob(STATE_FILE):
        claims, epoch = _recorded_epoch(state_path)
        if claims:
            try:
                mtime = state_path.stat().st_mtime
            except OSError:
                continue
            candidates.append((epoch, mtime, state_path.parent))
    skipped: list[str] = []
    found: Path | None = None
    for _, _, directory in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        try:
            load_checkpoint(directory)
        except (UnsafeFileError, IncompatibleArtifactError) as exc:
            skipped.append(str(exc))
            continue
        found = directory
        break
    if skipped:
        chosen = f"using {found}" if found is not None else "no verified checkpoint left"
        line = f"skipped {len(skipped)} unverified checkpoint(s) ({chosen}): " + "; ".join(skipped)
        warnings.warn(" ".join(line.split()), RuntimeWarning, stacklevel=2)
    return found
