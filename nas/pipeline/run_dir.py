"""The run directory's own bookkeeping: who holds it, and which spec each stage was run with.

A run directory is locked for the length of a run (an ``fcntl`` lock on ``.nas-run.lock``, which
the system releases when the holder dies, so a killed run never leaves a stale lock). Each
stage records the spec keys it depends on (:data:`STAGE_INPUTS`, cumulative: a stage depends on
everything its predecessors do) when it starts and when it finishes; a rerun with a spec that
changed any of them is refused, naming the changed keys, unless ``--force`` moves the stale
stages' outputs to ``superseded/<time>/`` and redoes them. Paths recorded in markers are
relative to the run directory, so a run moves or copies as a folder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from nas.artifacts.export import write_json_atomic
from nas.errors import ConfigError, RunStopped

LOCK_FILE = ".nas-run.lock"
STOP_FILE = ".nas-stop"  # written by `nas stop`; the live run ends at its next clean point
INPUTS_FILE = "INPUTS.json"
SUPERSEDED_DIR = "superseded"
STAGE_ORDER: tuple[str, ...] = ("train", "measure", "predictors", "search", "export")
# Spec keys (prefixes of flattened keys) each stage reads; later stages add to earlier ones.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "train": ("seed", "space.", "data.", "train."),
    "measure": ("measure.", "targets"),
    "predictors": ("predictors.",),  # one predictor per measured metric, whatever is searched
    "search": ("search.",),
    "export": ("export.",),
}


class RunLockedError(ConfigError):
    """Another live run holds the output directory."""


class StaleStagesError(ConfigError):
    """Finished or started stages were run with a spec that differs from this one."""


def flatten_spec(spec: Any) -> dict[str, Any]:
    """Dotted key → JSON value of every spec key, ``[train]`` with its defaults filled in."""
    from nas.training.config import TrainConfig

    data = dataclasses.asdict(spec)
    options = data.pop("train")["options"]
    train = TrainConfig.from_dict({"seed": spec.seed, **dict(options)}).to_dict()
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "targets":
            for sub, item in value.items():
                flat[f"{key}.{sub}"] = item
        else:
            flat[key] = value
    flat.update({f"train.{k}": v for k, v in train.items()})
    return json.loads(json.dumps(flat, default=list))


def stage_inputs(spec: Any, stage: str) -> dict[str, Any]:
    """The flattened spec keys ``stage`` (and every stage before it) depends on."""
    prefixes = [p for s in STAGE_ORDER[: STAGE_ORDER.index(stage) + 1] for p in STAGE_INPUTS[s]]
    return {
        k: v
        for k, v in flatten_spec(spec).items()
        if any(k == p or (p.endswith(".") and k.startswith(p)) for p in prefixes)
    }


# Recorded before 0.2.0, when digits/npz/folder data ignored these sizes and the spec recorded
# their defaults; unset since, with the same split (the old fixed shares).
SAME_SPLIT_SINCE_0_2 = {("data.val_size", 5000, None), ("data.calib_size", 1000, None)}


def _is_same_split(key: str, old: Any, new: Any) -> bool:
    """Whether ``old → new`` is a record written before 0.2 naming the split that runs now.

    Values may be lists or tables (unhashable), so only scalars are looked up.

    >>> _is_same_split("data.val_size", 5000, None)
    True
    >>> _is_same_split("train.widths", {"a": 1}, [2])
    False
    """
    scalar = (str, int, float, bool, type(None))
    if not (isinstance(old, scalar) and isinstance(new, scalar)):
        return False
    return (key, old, new) in SAME_SPLIT_SINCE_0_2


def added_key_defaults() -> dict[str, Any]:
    """``train.<key>`` → default, JSON-shaped: a key a later version added means its default.

    A run recorded before a ``[train]`` key existed trained as that key's default says, so the
    key's absence from the record is no change when the spec leaves it at its default.
    """
    from nas.training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    defaults.pop("seed")
    return json.loads(json.dumps({f"train.{k}": v for k, v in defaults.items()}))


def changed_keys(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for every key whose value differs (missing keys included).

    >>> changed_keys({"train.epochs": 6}, {"train.epochs": 6, "train.ema_decay": 0.0})
    []
    >>> changed_keys({"train.epochs": 6}, {"train.epochs": 6, "train.ema_decay": 0.9})
    ['train.ema_decay: "<unset>" → 0.9']
    """
    lines = []
    defaults = added_key_defaults()
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, "<unset>"), current.get(key, "<unset>")
        if key not in recorded and key in defaults and new == defaults[key]:
            continue
        if _is_same_split(key, old, new):
            continue
        if old != new:
            lines.append(f"{key}: {json.dumps(old)} → {json.dumps(new)}")
    return lines


def recorded_inputs(stage_dir: Path) -> dict[str, Any] | None:
    """Inputs a stage recorded (DONE.json when finished, else INPUTS.json when started)."""
    for name in ("DONE.json", INPUTS_FILE):
        path = stage_dir / name
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (ValueError, OSError):
                return None
            inputs = data.get("inputs") if isinstance(data, dict) else None
            return inputs if isinstance(inputs, dict) else None
    return None


def stale_stages(root: Path, spec: Any) -> tuple[list[str], list[str]]:
    """Stages to redo because their recorded inputs differ, and every changed key.

    The first stage whose record differs makes every later stage stale too (they consumed its
    outputs). Stages that recorded nothing (never started) are not reported.
    """
    first: int | None = None
    changes: list[str] = []
    for i, stage in enumerate(STAGE_ORDER):
        recorded = recorded_inputs(root / stage)
        if recorded is None:
            continue
        differences = changed_keys(recorded, stage_inputs(spec, stage))
        if differences and first is None:
            first = i
        changes += [line for line in differences if line not in changes]
    if first is None:
        return [], []
    return [s for s in STAGE_ORDER[first:] if (root / s).exists()], changes


def refuse_stale(root: Path, spec: Any) -> None:
    """Raise :class:`StaleStagesError` naming every changed key when stages would be stale."""
    stale, changes = stale_stages(root, spec)
    if stale:
        raise StaleStagesError(
            f"output_dir={str(root)!r} was run with another spec; changed: "
            f"{'; '.join(changes)}. Stages {stale} would be stale: rerun with --force to redo "
            "them (their outputs move to superseded/), or choose another output_dir"
        )


SUPERSEDING_FILE = "SUPERSEDING.json"  # written before a --force moves anything, removed after


def supersede(root: Path, stages: Sequence[str]) -> Path | None:
    """Move the given stage directories to ``superseded/<UTC time>/`` (nothing is deleted).

    All or nothing: the plan (stages and target) is written to ``SUPERSEDING.json`` before the
    first move and removed after the last, and :func:`finish_superseding` completes a plan a
    killed run left, so a rerun never mixes superseded stages with kept ones.
    """
    present = [s for s in stages if (root / s).exists()]
    if not present:
        return None
    target = root / SUPERSEDED_DIR / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    plan = {"stages": present, "target": relative_to_run(root, target)}
    write_json_atomic(root / SUPERSEDING_FILE, plan)
    _move_planned(root, plan)
    return target


def _move_planned(root: Path, plan: Mapping[str, Any]) -> None:
    target = inside_run(root, str(plan["target"]))
    target.mkdir(parents=True, exist_ok=True)
    for stage in plan["stages"]:
        if stage in STAGE_ORDER and (root / stage).exists():
            os.replace(root / stage, target / stage)  # one rename: same file system
    (root / SUPERSEDING_FILE).unlink(missing_ok=True)


def finish_superseding(root: Path) -> Path | None:
    """Complete a ``--force`` a kill interrupted between its moves; the target, or ``None``.

    Raises:
        ConfigError: the plan file is unreadable or names a target outside the run directory.
    """
    path = root / SUPERSEDING_FILE
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
        stages, target = list(plan["stages"]), str(plan["target"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(
            f"{path}: an interrupted --force left an unreadable plan ({exc}); move the stage "
            f"folders it was superseding to {SUPERSEDED_DIR}/ by hand and delete it"
        ) from None
    resolved = inside_run(root, target).resolve()
    if not resolved.is_relative_to((root / SUPERSEDED_DIR).resolve()):
        raise ConfigError(f"{path}: target {target!r} is not under {SUPERSEDED_DIR}/")
    _move_planned(root, {"stages": stages, "target": target})
    return resolved


def outdated_by(root: Path, stage: str) -> str | None:
    """The earlier stage that finished after ``stage`` did (so ``stage`` used old outputs).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name, at in [("train", 5.0), ("measure", 3.0)]:
    ...     (root / name).mkdir()
    ...     _ = (root / name / "DONE.json").write_text(json.dumps({"finished_at": at}))
    >>> outdated_by(root, "measure")
    'train'
    """
    finished = _finished_at(root, stage)
    if finished is None:
        return None
    for earlier in STAGE_ORDER[: STAGE_ORDER.index(stage)]:
        at = _finished_at(root, earlier)
        if at is not None and at > finished:
            return earlier
    return None


def _finished_at(root: Path, stage: str) -> float | None:
    try:
        value = json.loads((root / stage / "DONE.json").read_text()).get("finished_at")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def relative_to_run(root: Path, path: str | os.PathLike[str]) -> str:
    """``path`` relative to the run directory (how markers record paths)."""
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())


def inside_run(root: Path, recorded: str) -> Path:
    """A path a marker recorded, resolved against the run directory (old absolute ones too)."""
    path = Path(recorded)
    return path if path.is_absolute() else Path(root) / path


class RunLock:
    """An exclusive lock on a run directory for the life of one run.

    Example:
        >>> import tempfile
        >>> with RunLock(Path(tempfile.mkdtemp())):
        ...     pass
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        handle = open(path, "a+")  # held open for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = holder_text(handle.read())
            handle.close()
            raise RunLockedError(
                f"output_dir={str(self.root)!r} is in use by another run ({holder}); wait for "
                "it to finish or choose another output_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
            )
        )
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def holder_text(text: str) -> str:
    try:
        info = json.loads(text)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started_at"])))
        return f"PID {int(info['pid'])} on host {info['host']!s}, since {started}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def request_stop(root: Path) -> Path:
    """Ask the live run of ``root`` to stop at its next clean point (``nas stop``)."""
    path = Path(root) / STOP_FILE
    write_json_atomic(
        path, {"pid": os.getpid(), "host": socket.gethostname(), "requested_at": time.time()}
    )
    return path


def stop_requested(root: Path) -> bool:
    """Whether ``nas stop`` asked the run of ``root`` to stop."""
    return (Path(root) / STOP_FILE).exists()


def clear_stop(root: Path) -> None:
    """Forget a stop request (a new run starts; an old request is not meant for it)."""
    (Path(root) / STOP_FILE).unlink(missing_ok=True)


def stop_here(root: Path, where: str) -> None:
    """Raise :class:`~nas.errors.RunStopped` if ``nas stop`` asked this run to stop.

    Called only at clean points: between stages, after a stored measurement, after a training
    epoch's checkpoint. ``where`` says which, for the message.
    """
    if stop_requested(root):
        raise RunStopped(
            f"{root}: stopped on request {where}; finished work is kept and `nas run` with the "
            "same spec resumes from here"
        )
