"""Any search's evaluations as completed trials of a persistent Optuna study, for optuna-dashboard.

Whichever searcher runs (pymoo, surrogate, random or Optuna), :class:`OptunaRecord` adds each
evaluation as it finishes to a study in an Optuna journal file, so that
``optuna-dashboard search/optuna.journal`` shows the run while it goes and after it.

The journal (``JournalStorage`` over ``JournalFileBackend``), not SQLite: each trial is one
appended line (under a millisecond, against 20-30 ms for an SQLite transaction), the dashboard
reads the file while the search appends to it, and an append-only log survives a kill. The only
damage a kill or a full disk can do is a cut last line, which is cut off on the next open
(:func:`_drop_torn_tail`); a lock left by a killed writer is released after a short grace
period. Trials carry their config key, and keys already in the study are skipped, so a resumed
search adds nothing twice.

The journal is only a side record of what the search's result store holds, so a journal that
cannot be read (a garbage or binary line mid-file) never stops a resume: it is set aside as
``optuna.journal.corrupt-<n>`` with one warning naming it, and a fresh journal is rebuilt as the
resumed search replays its evaluations from the store (:func:`~nas.search.base.run_search`
hands every stored config to the record again).

Values are in natural units, with each objective's own direction (``maximize`` for ``top1``);
constraint values go where Optuna and optuna-dashboard read them (``<= 0`` feasible).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from nas.errors import ConfigError, StorageError
from nas.results import Source
from nas.search.objectives import SearchProblem
from nas.space import Dimension, Numeric
from nas.subnet import SubnetConfig

if TYPE_CHECKING:
    import pandas as pd

    from nas.search.base import SearchResult

JOURNAL_FILE = "optuna.journal"
CONSTRAINTS_ATTR = "constraints"
"""System attribute Optuna's samplers and optuna-dashboard read constraint values from."""
LOCK_GRACE_S = 5
"""Seconds before a journal lock left by a killed writer is taken over (Optuna's default: 30)."""
CORRUPT_SUFFIX = ".corrupt-"
"""An unreadable journal is renamed to ``<name>.corrupt-<n>`` (the first free ``n``)."""
UNREADABLE_JOURNAL: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError)
"""What replaying a damaged journal raises: JSONDecodeError and UnicodeDecodeError (both
ValueError), or a JSON line that is not an Optuna log."""


class JournalSetAsideWarning(UserWarning):
    """An unreadable journal was set aside and is being rebuilt from the result store."""


def distribution(dim: Dimension) -> BaseDistribution:
    """Numeric and numeric ordered dimensions as numbers (readable axes), others as categories."""
    if isinstance(dim, Numeric):
        if dim.integer:
            return IntDistribution(int(dim.low), int(dim.high))
        return FloatDistribution(float(dim.low), float(dim.high))
    numbers = [v for v in dim.options if not isinstance(v, str | bool)]
    if dim.ordered and len(numbers) == len(dim.options):
        if all(isinstance(v, int) for v in numbers):
            return IntDistribution(int(min(numbers)), int(max(numbers)))
        return FloatDistribution(float(min(numbers)), float(max(numbers)))
    return CategoricalDistribution(dim.options)


def constraint_names(problem: SearchProblem) -> list[str]:
    """One name per ``G`` column, e.g. ``latency_ms@cpu<=5.0``."""
    return [
        f"{c.key}{op}{bound}"
        for c in problem.constraints
        for op, bound in (("<=", c.upper), (">=", c.lower))
        if bound is not None
    ]


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line: the next append would glue onto it and corrupt the journal."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        fh.truncate(fh.read().rfind(b"\n") + 1)


class _UnsyncedJournalFile(JournalFileBackend):
    """Optuna's journal file, appended under its lock but without an fsync per append.

    The fsync is most of a trial's cost (about 2 ms of 2.5 here) and buys the run nothing: the
    search's ResultStore fsyncs every evaluation, a resumed search adds whatever the journal
    lacks, and a killed process loses no byte it wrote (only a crash of the machine can).
    """

    def __init__(self, path: str, lock: JournalFileSymlinkLock) -> None:
        super().__init__(path, lock_obj=lock)
        self._path, self._writer_lock = path, lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        payload = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        view = memoryview(payload.encode())
        self._writer_lock.acquire()
        try:
            with open(self._path, "ab", buffering=0) as fh:
                size = os.fstat(fh.fileno()).st_size
                try:
                    while view:  # a short write continues where it stopped
                        view = view[fh.write(view) :]
                except OSError as exc:
                    fh.truncate(size)
                    raise StorageError(
                        f"could not append to {self._path}: {exc.strerror or exc}; the trials "
                        "before are intact (free space, then rerun to resume)"
                    ) from exc
        finally:
            self._writer_lock.release()


def open_journal(path: str | os.PathLike[str]) -> JournalStorage:
    """The journal at ``path`` (created if missing), its cut last line dropped."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(target)
    lock = JournalFileSymlinkLock(str(target), grace_period=LOCK_GRACE_S)
    return JournalStorage(_UnsyncedJournalFile(str(target), lock))


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<n>``, the first ``n`` not taken; the new path."""
    n = 1
    while (aside := path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")).exists():
        n += 1
    os.replace(path, aside)
    return aside


def _warn(message: str) -> None:
    warnings.warn(message, JournalSetAsideWarning, stacklevel=4)


def open_or_set_aside(
    path: str | os.PathLike[str], warn: Callable[[str], None] | None = None
) -> JournalStorage:
    """:func:`open_journal`; an unreadable journal is set aside, reported and started afresh.

    ``warn`` gets one line naming the set-aside file (default: a
    :class:`JournalSetAsideWarning`).
    """
    target = Path(path)
    try:
        return open_journal(target)
    except UNREADABLE_JOURNAL as exc:
        aside = set_aside(target)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        (warn or _warn)(
            f"{target} could not be read ({reason}); set aside as {aside}, and rebuilt from "
            "the result store as the search replays it"
        )
        return open_journal(target)


class OptunaRecord:
    """A study mirroring one search: one completed trial per distinct evaluated config.

    Args:
        path: Journal file (e.g. ``<run>/search/optuna.journal``); several studies may share it.
        problem: Gives the study its directions, metric names and parameter distributions.
        study_name: Created on first use, appended to afterwards.
        source: ``"predicted"`` or ``"measured"``, recorded on every trial.
        warn: Told, in one line, when an unreadable journal is set aside
            (:func:`open_or_set_aside`).

    Raises:
        ConfigError: If the study exists with other objectives.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: SearchProblem,
        *,
        study_name: str,
        source: Source = "measured",
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._problem = problem
        self._source = source
        self.path = Path(path)
        directions: list[Literal["maximize", "minimize"]] = [
            "maximize" if o.direction == "max" else "minimize" for o in problem.objectives
        ]
        self.study = optuna.create_study(
            storage=open_or_set_aside(self.path, warn),
            study_name=study_name,
            directions=directions,
            load_if_exists=True,
        )
        names = [o.key for o in problem.objectives]
        found = [d.name.lower() for d in self.study.directions]
        if found != directions or self.study.metric_names not in (None, names):
            raise ConfigError(
                f"study {study_name!r} in {str(self.path)!r} has objectives "
                f"{self.study.metric_names} {found}, not {names} {directions}; "
                "use another study name or file"
            )
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(names)
            self.study.set_user_attr("space", problem.space.name)
            self.study.set_user_attr("source", source)
            self.study.set_user_attr(CONSTRAINTS_ATTR, constraint_names(problem))
        self._distributions = {d.name: distribution(d) for d in problem.space.dims}
        self._keys = {
            t.user_attrs.get("config_key") for t in self.study.get_trials(deepcopy=False)
        }

    def __len__(self) -> int:
        return len(self._keys)

    def add(
        self,
        step: int | None,
        configs: Sequence[SubnetConfig],
        rows: Sequence[Mapping[str, float]],
    ) -> int:
        """Add the configs not yet in the study (a :data:`~nas.search.base.EvaluatedHook`).

        Returns:
            How many trials were added.
        """
        problem = self._problem
        objective_keys = [o.key for o in problem.objectives]
        G = problem.constraint_matrix(rows)
        added = 0
        for i, (config, row) in enumerate(zip(configs, rows, strict=True)):
            if config.key in self._keys:
                continue
            attrs: dict[str, object] = {"config_key": config.key, "source": self._source}
            if step is not None:
                attrs["step"] = int(step)
            attrs.update({k: float(v) for k, v in row.items() if k not in objective_keys})
            system_attrs = {}
            if G is not None:
                attrs["feasible"] = bool((G[i] <= 0).all())
                system_attrs[CONSTRAINTS_ATTR] = [float(g) for g in G[i]]
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=dict(config.items),
                    distributions=self._distributions,
                    values=[float(row[k]) for k in objective_keys],
                    user_attrs=attrs,
                    system_attrs=system_attrs,
                )
            )
            self._keys.add(config.key)
            added += 1
        return added


def record_measured_front(
    path: str | os.PathLike[str],
    result: SearchResult,
    front: pd.DataFrame,
    *,
    study_name: str,
    warn: Callable[[str], None] | None = None,
) -> int:
    """The measured values of a predicted search's front (``measure_front``'s frame) as a study.

    Returns:
        How many trials were added.
    """
    keys = result.problem.metric_keys
    rows = [{k: float(r[f"{k}.measured"]) for k in keys} for r in front.to_dict("records")]
    record = OptunaRecord(
        path, result.problem, study_name=study_name, source="measured", warn=warn
    )
    return record.add(None, result.front_configs, rows)
