"""What a run directory holds right now: stages done and in flight, counts, front, lock holder.

Reads only the files the pipeline writes (markers, JSONL stores, CSVs), never imports torch or
Ray, so ``nas status`` and ``nas runs`` answer in well under a second, during a run or after.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.pipeline.console import aligned
from nas.pipeline.run_dir import INPUTS_FILE, LOCK_FILE, STAGE_ORDER, SUPERSEDED_DIR, holder_text
from nas.progress import clock_text

SPEC_FILE = "spec.json"


def require_run(root: Path, *, key: str = "OUTPUT_DIR") -> Path:
    """``root`` if it is a run directory (it holds ``spec.json``), else one clear error."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{key}={str(root)!r} is not a directory")
    if not (root / SPEC_FILE).is_file():
        raise ConfigError(
            f"{key}={str(root)!r} is not a run directory (it has no {SPEC_FILE}); "
            "`nas runs FOLDER` lists the runs under a folder"
        )
    return root


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _jsonl_counts(path: Path) -> tuple[Counter[str], int]:
    """Distinct configs per target of a result store, and distinct configs in all.

    A config measured twice (a resumed stage, a later source) counts once; a torn last line is
    not counted.
    """
    per_target: dict[str, set[str]] = {}
    if path.exists():
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                record = json.loads(line)
                target, key = str(record.get("target")), str(record["config_key"])
            except (ValueError, AttributeError, KeyError, TypeError):
                continue
            per_target.setdefault(target, set()).add(key)
    counts = Counter({target: len(keys) for target, keys in per_target.items()})
    return counts, len(set().union(*per_target.values()))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def lock_holder(root: Path) -> str | None:
    """Who holds the run lock now (``PID … on host …``), or ``None`` when no run is live."""
    path = root / LOCK_FILE
    if not path.exists():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return holder_text(fh.read())
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def run_status(root: Path) -> dict[str, Any]:
    """Stages, counts, hypervolume and front of one run directory, as plain data."""
    root = require_run(root)
    spec = _json(root / SPEC_FILE) or {}
    stages = {}
    for stage in STAGE_ORDER:
        done = _json(root / stage / "DONE.json")
        if done is not None:
            stages[stage] = {"state": "done", "seconds": done.get("seconds")}
        elif (root / stage / INPUTS_FILE).exists():
            stages[stage] = {"state": "in flight" if lock_holder(root) else "interrupted"}
        else:
            stages[stage] = {"state": "not started"}
    measured, n_measured = _jsonl_counts(root / "measure" / "results.jsonl")
    history = _csv_rows(root / "search" / "history.csv")
    front = _csv_rows(root / "export" / "front.csv") or _csv_rows(root / "search" / "front.csv")
    last = history[-1] if history else {}
    searched = _jsonl_counts(root / "search" / "predicted.jsonl")[1]
    return {
        "run": str(root),
        "name": spec.get("name"),
        "running": lock_holder(root),
        "stages": stages,
        "measured": dict(measured),
        "measured_subnets": n_measured,
        "searched": searched,
        "progress": stage_progress(root, spec, stages, n_measured, searched),
        "hypervolume": {
            k: _number(v) for k, v in last.items() if k.startswith(("hv", "hyper", "ref"))
        },
        "front": front,
        "superseded": sorted(p.name for p in (root / SUPERSEDED_DIR).glob("*"))
        if (root / SUPERSEDED_DIR).exists()
        else [],
    }


def stage_progress(
    root: Path,
    spec: dict[str, Any],
    stages: dict[str, dict[str, Any]],
    n_measured: int,
    n_searched: int,
    *,
    now: float | None = None,
) -> dict[str, Any] | None:
    """How far the started-but-unfinished stage is: done / total, elapsed, ETA, last epoch.

    ``None`` when no stage is in flight or interrupted. The ETA assumes the stage's pace so far
    (from its ``INPUTS.json``, written when it started) holds; it is ``None`` before any item is
    done or where the total is not known in advance (export).
    """
    stage = next((s for s, i in stages.items() if i["state"] in ("in flight", "interrupted")), "")
    if not stage:
        return None
    section = spec.get(stage, {})
    latest: dict[str, str] = {}
    done: int
    total: int | None
    if stage == "train":
        rows = _csv_rows(root / "train" / "metrics.csv")
        done, latest = len(rows), (rows[-1] if rows else {})
        total = _train_epochs(section)
        unit = "epochs"
    elif stage == "measure":
        done, total, unit = n_measured, int(section.get("n_samples", 0)) or None, "subnets"
    elif stage == "search":
        done, total, unit = n_searched, int(section.get("budget", 0)) or None, "evaluations"
    else:
        done, total, unit = len(list((root / stage).glob("subnet_*"))), None, "subnets"
    started = (root / stage / INPUTS_FILE).stat().st_mtime
    elapsed = max((time.time() if now is None else now) - started, 0.0)
    eta = None
    if total is not None and 0 < done < total and stages[stage]["state"] == "in flight":
        eta = elapsed / done * (total - done)
    return {
        "stage": stage,
        "done": done,
        "total": total,
        "unit": unit,
        "elapsed_s": elapsed,
        "eta_s": eta,
        "latest": {k: _number(v) for k, v in latest.items()},
    }


def _train_epochs(section: dict[str, Any]) -> int:
    from nas.training.config import TrainConfig

    options = section.get("options", section)
    epochs = options.get("epochs") if isinstance(options, dict) else None
    return int(epochs) if isinstance(epochs, int) else int(TrainConfig().epochs)


def _progress_lines(progress: dict[str, Any]) -> list[str]:
    total = progress["total"]
    share = f" ({100 * progress['done'] / total:.0f}%)" if total else ""
    text = (
        f"  progress: {progress['stage']} {progress['done']}/{total or '?'} {progress['unit']}"
        f"{share}, {clock_text(progress['elapsed_s'])} elapsed"
    )
    if progress["eta_s"] is not None:
        text += f", ETA {clock_text(progress['eta_s'])}"
    lines = [text]
    shown = ("epoch", "loss_largest", "top1_largest", "top1_smallest", "samples_per_s")
    latest = {k: v for k, v in progress["latest"].items() if k in shown}
    if latest:
        lines.append("  last epoch: " + ", ".join(f"{k} {_short(v)}" for k, v in latest.items()))
    return lines


def format_status(status: dict[str, Any]) -> str:
    """The text ``nas status`` prints."""
    lines = [f"run {status['run']} ({status['name']})"]
    lines.append(f"  live: {status['running']}" if status["running"] else "  live: no")
    for stage, info in status["stages"].items():
        seconds = info.get("seconds")
        took = f" in {seconds:.0f} s" if isinstance(seconds, int | float) else ""
        lines.append(f"  {stage:<11} {info['state']}{took}")
    if status.get("progress"):
        lines += _progress_lines(status["progress"])
    if status["measured"]:
        counts = ", ".join(f"{t} {n}" for t, n in sorted(status["measured"].items()))
        lines.append(
            f"  measured subnets: {status.get('measured_subnets', '–')} (per target: {counts})"
        )
    if status["searched"]:
        lines.append(f"  searched subnets (predicted values): {status['searched']}")
    if status["hypervolume"]:
        hv = ", ".join(f"{k} {_short(v)}" for k, v in status["hypervolume"].items())
        lines.append(f"  search hypervolume (last step): {hv}")
    if status["front"]:
        lines.append(f"  front: {len(status['front'])} subnets (measured values)")
        lines += ["    " + line for line in front_table(status["front"])]
    if status["superseded"]:
        lines.append(f"  superseded outputs: {', '.join(status['superseded'])}")
    return "\n".join(lines)


def _shown_metric(column: str) -> bool:
    """Measured metrics, without the per-target copies of target-free costs."""
    name = column.removesuffix(".measured")
    if name == column:
        return False
    return "@" not in name or name.startswith(("latency", "top1"))


def front_table(rows: list[dict[str, str]]) -> list[str]:
    r"""The front's measured metrics as aligned columns; a column that repeats another is left out.

    ``top1_test@<target>`` equals ``top1_test`` wherever the target runs the float model; it is
    shown only where it differs. Missing values print as ``–``.

    >>> rows = [{"subnet": "s0", "top1.measured": "87.325", "top1_test.measured": "86.9",
    ...          "top1_test@cpu.measured": "86.9", "model_size_bytes.measured": "249768.0"}]
    >>> print("\n".join(front_table(rows)))
    subnet  top1   top1_test  size_kB
    s0      87.33  86.90      249.8
    """
    columns = [c for c in rows[0] if c == "subnet" or _shown_metric(c)]
    columns = [c for c in columns if not _repeats_another(rows, c, columns)]
    header = [_heading(c) for c in columns]
    return aligned(header, [[_cell(row.get(c, ""), c) for c in columns] for row in rows])


def _repeats_another(rows: list[dict[str, str]], column: str, columns: list[str]) -> bool:
    name = column.removesuffix(".measured")
    if "@" not in name or not name.startswith("top1"):
        return False
    plain = name.split("@")[0] + ".measured"
    return plain in columns and all(row.get(column) == row.get(plain) for row in rows)


def _heading(column: str) -> str:
    name = column.removesuffix(".measured")
    return "size_kB" if name == "model_size_bytes" else name


def _cell(value: str | None, column: str) -> str:
    """A value rounded to what it means: accuracy to 0.01 pp, size in kB, others 4 digits."""
    number = _number(value)
    if not isinstance(number, float):
        return "–" if number in ("", None) else str(number)
    name = column.removesuffix(".measured")
    if name.startswith("top1"):
        return f"{number:.2f}"
    if name == "model_size_bytes":
        return f"{number / 1000:.1f}"
    return _short(number)


def _number(value: object) -> object:
    """A CSV cell as a float where it is one (``nan`` counts as missing: ``None``)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value
    return None if math.isnan(number) else number


def _short(value: object) -> str:
    """Four significant digits for a number, ``–`` for a missing one, else the text.

    >>> _short(90.50611342484676), _short(None), _short("local")
    ('90.51', '–', 'local')
    """
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def find_runs(folder: Path, *, max_depth: int = 4) -> Iterator[Path]:
    """Run directories under ``folder`` (those with ``spec.json``), superseded outputs skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"FOLDER={str(folder)!r} is not a directory")
    todo = [(folder, 0)]
    while todo:
        path, depth = todo.pop()
        if (path / SPEC_FILE).is_file():
            yield path
            continue
        if depth < max_depth:
            children = sorted(
                (p for p in path.iterdir() if p.is_dir() and p.name != SUPERSEDED_DIR),
                reverse=True,
            )
            todo += [(p, depth + 1) for p in children]


def format_runs(folder: Path) -> str:
    """One line per run: path, name, stages done, live or not, last change."""
    lines = []
    for root in find_runs(folder):
        status = run_status(root)
        done = [s for s, info in status["stages"].items() if info["state"] == "done"]
        changed = max((p.stat().st_mtime for p in root.glob("*/DONE.json")), default=None)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(changed)) if changed else "-"
        live = "live" if status["running"] else "idle"
        lines.append(
            f"{root}  {status['name']}  {len(done)}/{len(STAGE_ORDER)} stages  {live}  {when}"
        )
    return "\n".join(lines) if lines else f"no runs under {folder}"
