"""Training checkpoints in safe formats only: safetensors tensors plus one JSON state file.

A checkpoint directory holds ``model.safetensors`` (supernet weights), ``optimizer.safetensors``
(optimizer tensors and the torch RNG state) and ``state.json`` (spec, epoch, step, optimizer
hyper-parameters, scheduler state, metrics). ``state.json`` is written last and atomically, so a
directory without it is an unfinished checkpoint and is never resumed from. Nothing is unpickled:
a file that is not safetensors is refused with :class:`~nas.errors.UnsafeFileError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.space import SearchSpace

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT = "nas-supernet-checkpoint"
FORMAT_VERSION = 1
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # protocol-2+ pickle, zip (torch.save)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: tensors and the JSON state."""

    path: Path
    model: dict[str, Tensor]
    optimizer: dict[str, Tensor]
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return int(self.state["epoch"])


def _write_safetensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=path.parent)
    os.close(fd)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise ConfigError(f"{path} does not exist: not a complete checkpoint")
    with open(path, "rb") as fh:
        head = fh.read(4)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        kind = "a pickle" if head.startswith(_PICKLE_MAGIC) else "not safetensors"
        raise UnsafeFileError(
            f"{path} is {kind}; checkpoints are loaded from safetensors only and pickles are "
            "never unpickled (re-save the weights with safetensors.torch.save_file)"
        ) from exc


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
) -> Path:
    """Write a checkpoint directory (``state.json`` last, atomically)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _write_safetensors(out / MODEL_FILE, model.state_dict())
    opt_tensors, opt_plain = optimizer_tensors(optimizer) if optimizer else ({}, None)
    _write_safetensors(out / OPTIMIZER_FILE, {**opt_tensors, "rng.torch": torch.get_rng_state()})
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
    }
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=out)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2, default=_json_default)
    os.replace(tmp, out / STATE_FILE)
    return out


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON state")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory; refuses pickles and unfinished checkpoints."""
    path = Path(path)
    if path.is_file():
        _read_safetensors(path)  # raises UnsafeFileError for pickles
        raise ConfigError(f"{path} is a file; a checkpoint is a directory with {STATE_FILE}")
    state_path = path / STATE_FILE
    if not state_path.exists():
        raise ConfigError(f"{path} is not a finished checkpoint: {STATE_FILE} is missing")
    state = json.loads(state_path.read_text())
    if state.get("format") != FORMAT:
        raise IncompatibleArtifactError(
            f"{state_path}: format {state.get('format')!r} != {FORMAT!r}"
        )
    return Checkpoint(
        path=path,
        model=_read_safetensors(path / MODEL_FILE),
        optimizer=_read_safetensors(path / OPTIMIZER_FILE),
        state=state,
    )


def load_supernet(
    path: str | Path, *, space: SearchSpace | None = None
) -> tuple[nn.Module, Checkpoint]:
    """A :class:`~nas.supernet.Supernet` with the checkpoint's weights, and the checkpoint.

    Raises:
        IncompatibleArtifactError: ``space`` differs from the space the checkpoint was trained on.
    """
    from nas.supernet import Supernet

    checkpoint = load_checkpoint(path)
    trained_on = checkpoint.state["search_space"]
    if space is None:
        space = search_spaces.rebuild(trained_on, artifact=str(path))
    elif space.fingerprint() != trained_on["fingerprint"]:
        raise IncompatibleArtifactError(
            f"{path}: trained on search space {trained_on['name']!r} "
            f"(fingerprint {trained_on['fingerprint']}), asked to load into {space.name!r} "
            f"(fingerprint {space.fingerprint()})"
        )
    supernet = Supernet(space)
    supernet.load_state_dict(checkpoint.model, strict=True)
    return supernet, checkpoint


def latest_checkpoint(root: str | Path) -> Path | None:
    """The finished checkpoint with the most completed epochs anywhere below ``root``."""
    best: tuple[int, float, Path] | None = None
    root = Path(root)
    if not root.exists():
        return None
    for state_path in root.rglob(STATE_FILE):
        try:
            state = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if state.get("format") != FORMAT:
            continue
        key = (int(state["epoch"]), state_path.stat().st_mtime, state_path.parent)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]
