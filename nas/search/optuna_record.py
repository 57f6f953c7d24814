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

Each parameter's distribution holds exactly the space's choices, so a user who loads a study and
goes on with an Optuna sampler (``study.ask(fixed_distributions=trial.distributions)``) gets only
valid configs (:func:`config_from_params` fills in the rest and validates): an ordered integer
choice whose options are an arithmetic progression is a stepped ``IntDistribution`` (8, 16, 24:
``step=8``), any other choice a ``CategoricalDistribution`` of its options, a numeric dimension
its interval. A dimension with one option is no parameter at all (it would only add a zero bar
to the importance chart): it is in the study's ``fixed_params`` user attribute.

The pipeline's studies (:func:`search_study_name`, :func:`measured_study_name`): the search's
evaluations as ``<run>.search.predicted`` (predicted values) or ``<run>.search.measured``, the
predicted front once measured as ``<run>.measured_front``, and every measured subnet of the run
as ``<run>.measured``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from nas.space import Choice, Dimension, Numeric, SearchSpace
from nas.subnet import SubnetConfig, Value

if TYPE_CHECKING:
    import pandas as pd

    from nas.search.base import SearchResult
    from nas.search.front import MeasuredSubnet

JOURNAL_FILE = "optuna.journal"
CONSTRAINTS_ATTR = "constraints"
"""System attribute Optuna's samplers and optuna-dashboard read constraint values from."""
FIXED_PARAMS_ATTR = "fixed_params"
"""Study user attribute holding the dimensions with a single option (no distribution)."""
LOCK_GRACE_S = 5
"""Seconds before a journal lock left by a killed writer is taken over (Optuna's default: 30)."""
CORRUPT_SUFFIX = ".corrupt-"
"""An unreadable journal is renamed to ``<name>.corrupt-<n>`` (the first free ``n``)."""
UNREADABLE_JOURNAL: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError)
"""What replaying a damaged journal raises: JSONDecodeError and UnicodeDecodeError (both
ValueError), or a JSON line that is not an Optuna log."""


class JournalSetAsideWarning(UserWarning):
    """An unreadable journal was set aside and is being rebuilt from the result store."""


class StudyRebuiltWarning(UserWarning):
    """A study recorded with other parameter distributions was deleted and started afresh."""


def search_study_name(run: str, source: Source) -> str:
    """The pipeline's study of the search's evaluations: ``<run>.search.<source>``."""
    return f"{run}.search.{source}"


def measured_front_study_name(run: str) -> str:
    """The pipeline's study of a predicted search's front, measured: ``<run>.measured_front``."""
    return f"{run}.measured_front"


def measured_study_name(run: str) -> str:
    """The pipeline's study of every measured subnet of the run: ``<run>.measured``."""
    return f"{run}.measured"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's own log at WARNING at most for the block (no "A new study created" line).

    Warnings still show, and a verbosity the user set above WARNING is kept.
    """
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _step(values: Sequence[int]) -> int | None:
    """The common difference of ``values`` (sorted, distinct), or None if it is no progression."""
    steps = {b - a for a, b in itertools.pairwise(values)}
    return steps.pop() if len(steps) == 1 else None


def distribution(dim: Dimension) -> BaseDistribution:
    """The Optuna distribution holding exactly ``dim``'s values.

    A numeric dimension is its interval; an ordered choice of integers in arithmetic progression
    a stepped ``IntDistribution`` (readable axes, and samplers keep the order); every other
    choice (floats included: a stepped float grid is not exact) a ``CategoricalDistribution``.
    """
    if isinstance(dim, Numeric):
        if dim.integer:
            return IntDistribution(int(dim.low), int(dim.high))
        return FloatDistribution(float(dim.low), float(dim.high))
    if dim.ordered and len(dim.options) > 1 and all(_is_int(v) for v in dim.options):
        values = sorted(int(v) for v in dim.options)
        step = _step(values)
        if step is not None:
            return IntDistribution(values[0], values[-1], step=step)
    return CategoricalDistribution(dim.options)


def fixed_params(space: SearchSpace) -> dict[str, Value]:
    """The dimensions with a single option, and that option: not parameters of a study."""
    return {
        d.name: d.options[0] for d in space.dims if isinstance(d, Choice) and len(d.options) == 1
    }


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """One distribution per dimension with a choice to make (:func:`distribution`)."""
    fixed = fixed_params(space)
    return {d.name: distribution(d) for d in space.dims if d.name not in fixed}


def config_from_params(space: SearchSpace, params: Mapping[str, object]) -> SubnetConfig:
    """The config of a trial's ``params``, the fixed dimensions filled in, validated.

    Raises:
        ConfigError: naming the key, if a value is not one of the space's.
    """
    return space.validate({**fixed_params(space), **params})  # type: ignore[dict-item]


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


def _warn_rebuilt(message: str) -> None:
    warnings.warn(message, StudyRebuiltWarning, stacklevel=3)


def _describe(dists: Mapping[str, BaseDistribution], limit: int = 3) -> str:
    """The first few parameters and their distributions, for a one-line message."""
    items = [f"{k}: {d!r}" for k, d in list(dists.items())[:limit]]
    more = f", ... ({len(dists)} in all)" if len(dists) > limit else ""
    return "{" + ", ".join(items) + more + "}"


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

    A study written before its parameters had their present distributions (a record of an older
    version, or of a changed space) is deleted and started afresh, with one line to ``warn``:
    a resumed search hands every stored evaluation to :meth:`add` again, so the new study holds
    all of them, and a sampler continuing it never sees two distributions for one parameter.

    Args:
        path: Journal file (e.g. ``<run>/search/optuna.journal``); several studies may share it.
        problem: Gives the study its directions, metric names and parameter distributions.
        study_name: Created on first use, appended to afterwards.
        source: ``"predicted"`` or ``"measured"``, recorded on the study and on every trial.
        warn: Told, in one line, when an unreadable journal is set aside
            (:func:`open_or_set_aside`) or an outdated study is rebuilt.

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
        self._distributions = distributions(problem.space)
        self._fixed = fixed_params(problem.space)
        directions: list[Literal["maximize", "minimize"]] = [
            "maximize" if o.direction == "max" else "minimize" for o in problem.objectives
        ]
        storage = open_or_set_aside(self.path, warn)
        with quiet_optuna():
            self.study = optuna.create_study(
                storage=storage, study_name=study_name, directions=directions, load_if_exists=True
            )
        names = [o.key for o in problem.objectives]
        found = [d.name.lower() for d in self.study.directions]
        if found != directions or self.study.metric_names not in (None, names):
            raise ConfigError(
                f"study {study_name!r} in {str(self.path)!r} has objectives "
                f"{self.study.metric_names} {found}, not {names} {directions}; "
                "use another study name or file"
            )
        trials = self.study.get_trials(deepcopy=False)
        outdated = next((t for t in trials if t.distributions != self._distributions), None)
        if outdated is not None:
            (warn or _warn_rebuilt)(
                f"study {study_name!r} in {self.path} has parameters "
                f"{_describe(outdated.distributions)}, not {_describe(self._distributions)}; "
                "rebuilt with the present ones"
            )
            with quiet_optuna():
                optuna.delete_study(study_name=study_name, storage=storage)
                self.study = optuna.create_study(
                    storage=storage, study_name=study_name, directions=directions
                )
            trials = []
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(names)
            self.study.set_user_attr("space", problem.space.name)
            self.study.set_user_attr("source", source)
            self.study.set_user_attr(CONSTRAINTS_ATTR, constraint_names(problem))
        if self.study.user_attrs.get(FIXED_PARAMS_ATTR) != self._fixed:
            self.study.set_user_attr(FIXED_PARAMS_ATTR, self._fixed)
        self._keys = {t.user_attrs.get("config_key") for t in trials}

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
                    params={k: v for k, v in config.items if k not in self._fixed},
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


def record_measured(
    path: str | os.PathLike[str],
    problem: SearchProblem,
    subnets: Sequence[MeasuredSubnet],
    *,
    study_name: str,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Every subnet measured on each metric ``problem`` reads, its measured values, as a study.

    The subnets measured for the predictors and the re-measured search front alike
    (:func:`~nas.pipeline.context.measured_subnets`); a subnet lacking a metric is left out.

    Returns:
        How many trials were added.
    """
    from nas.search.front import complete

    found = complete(problem, subnets)
    record = OptunaRecord(path, problem, study_name=study_name, source="measured", warn=warn)
    return record.add(None, [s.config for s in found], [dict(s.metrics) for s in found])


def drop_legacy_study(
    path: str | os.PathLike[str], study_name: str, problem: SearchProblem
) -> bool:
    """Delete ``study_name`` if it is a record of this problem's space; whether it was.

    Before the search's study was named after its source, it was named after the run; a
    resumed run records the same evaluations under the new name, so the old study would only
    show them twice (and predicted values under a name that reads like results).
    """
    storage = open_journal(path)
    names = {s.study_name for s in storage.get_all_studies()}
    if study_name not in names:
        return False
    with quiet_optuna():
        study = optuna.load_study(study_name=study_name, storage=storage)
        attrs = study.user_attrs
        if attrs.get("space") != problem.space.name or "source" not in attrs:
            return False
        optuna.delete_study(study_name=study_name, storage=storage)
    return True
