"""Predictors: several metric predictors of one space answered together, plus a Pareto archive.

A bundle directory holds one saved predictor per metric and an optional archive::

    bundle.json           # format + version, space fingerprint, predictor names, archive file
    top1/                 # a predictor directory (see predictors.persistence)
    latency_ms@cpu_fp32/
    pareto.jsonl          # optional: {"config": {...}, "metrics": {...}} per line

``best`` answers "the best subnet under L ms on target T" from the archive, so it is exact with
respect to the archive and needs no search at query time.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.artifacts.safe_files import read_json_object, require, resolve_inside
from nas.errors import (
    ConfigError,
    IncompatibleArtifactError,
    MissingArtifactError,
    format_choice_error,
)
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from predictors.persistence import (
    check_predictor,
    load_predictor,
    refuse_unsafe_files,
    save_predictor,
    space_from_schema,
)
from predictors.predictor import ConfigLike, Predictor
from predictors.quality import write_json_atomic

BUNDLE_FILE = "bundle.json"
BUNDLE_VERSION = 1
ARCHIVE_FILE = "pareto.jsonl"
LATENCY_METRIC = "latency_ms"


class Predictors:
    """Metric predictors sharing one search space, keyed by ``metric`` or ``metric@target``.

    Args:
        predictors: The predictors; their names must be distinct and spaces identical.
        archive: Optional Pareto archive, records ``{"config": {...}, "metrics": {...}}``.

    Example:
        >>> import search_spaces
        >>> from predictors.models import make_predictor
        >>> space = search_spaces.get("nas_bench_201")
        >>> X = space.encode_many(space.sample_many(60, np.random.default_rng(0)))
        >>> lat = Predictor(space, make_predictor(space, kind="ridge").fit(X, 1 + (X == 3).sum(1)),
        ...                 metric="latency_ms", target="cpu")
        >>> acc = Predictor(space, make_predictor(space, kind="ridge").fit(X, (X > 1).sum(1)),
        ...                 metric="top1")
        >>> bundle = Predictors([acc, lat])
        >>> sorted(bundle.predict([space.largest()])[0])
        ['latency_ms@cpu', 'top1']
    """

    def __init__(
        self,
        predictors: Sequence[Predictor],
        *,
        archive: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if not predictors:
            raise ConfigError("a Predictors bundle needs at least one predictor")
        names = [p.name for p in predictors]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"predictor names must be distinct; duplicated: {duplicated}")
        fingerprints = {p.space_fingerprint for p in predictors}
        if len(fingerprints) != 1:
            raise IncompatibleArtifactError(
                "predictors of one bundle must share a search space; fingerprints: "
                + ", ".join(f"{p.name}={p.space_fingerprint}" for p in predictors)
            )
        self._predictors: dict[str, Predictor] = {p.name: p for p in predictors}
        self.space: SearchSpace = predictors[0].space
        self.space_fingerprint: str = predictors[0].space_fingerprint
        self.archive: list[dict[str, Any]] = (
            [self._check_record(i, r) for i, r in enumerate(archive)] if archive else []
        )

    # -- introspection ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Predictor names, e.g. ``("top1", "latency_ms@cpu_fp32")``."""
        return tuple(self._predictors)

    @property
    def targets(self) -> tuple[str, ...]:
        """Hardware targets with a latency in the archive or among the predictors."""
        found = {p.target for p in self._predictors.values() if p.metric == LATENCY_METRIC}
        for record in self.archive:
            for key in record["metrics"]:
                metric, _, target = key.partition("@")
                if metric == LATENCY_METRIC and target:
                    found.add(target)
        return tuple(sorted(t for t in found if t))

    def __getitem__(self, name: str) -> Predictor:
        if name not in self._predictors:
            raise ConfigError(format_choice_error("metric", name, list(self.names)))
        return self._predictors[name]

    def __len__(self) -> int:
        return len(self._predictors)

    def _check_record(self, index: int, record: Mapping[str, Any]) -> dict[str, Any]:
        return check_record(self.space, index, record)

    # -- queries ----------------------------------------------------------------------------------
    def predict(
        self,
        configs: Sequence[ConfigLike],
        *,
        metrics: Sequence[str] | None = None,
        return_std: bool = False,
    ) -> list[dict[str, float]]:
        """One dict per config: metric name → prediction (and ``<name>_std`` if ``return_std``).

        ``return_std`` adds the std only for predictors that support it (kind ``ensemble``).
        """
        selected = [self[m] for m in metrics] if metrics is not None else self._predictors.values()
        selected = list(selected)
        if not selected:
            raise ConfigError(f"metrics=[] selects nothing; allowed: {list(self.names)}")
        X = selected[0].encode(configs)
        columns: dict[str, np.ndarray] = {}
        for predictor in selected:
            if return_std and predictor.supports_std:
                mean, std = predictor.predict_encoded(X, return_std=True)
                columns[predictor.name] = mean
                columns[f"{predictor.name}_std"] = std
            else:
                columns[predictor.name] = predictor.predict_encoded(X)
        keys = list(columns)
        matrix = np.column_stack([columns[k] for k in keys]) if len(X) else np.zeros((0, 0))
        return [dict(zip(keys, map(float, row), strict=True)) for row in matrix]

    def best(
        self,
        *,
        target: str,
        max_latency_ms: float,
        objective: str = "top1",
    ) -> dict[str, Any] | None:
        """Archive entry maximising ``objective`` with ``latency_ms@target <= max_latency_ms``.

        Returns:
            ``{"config": {...}, "metrics": {...}}``, or ``None`` if no entry meets the bound.
        """
        return best_in_archive(
            self.archive, target=target, max_latency_ms=max_latency_ms, objective=objective
        )

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every predictor, the archive (if any) and ``bundle.json``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for name, predictor in self._predictors.items():
            save_predictor(predictor, directory / name)
        if self.archive:
            write_archive(directory / ARCHIVE_FILE, self.archive)
        write_json_atomic(
            directory / BUNDLE_FILE,
            {
                "format": "nas-predictors",
                "format_version": BUNDLE_VERSION,
                "space_fingerprint": self.space_fingerprint,
                "predictors": list(self.names),
                "archive": ARCHIVE_FILE if self.archive else None,
            },
        )
        return directory

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, space: SearchSpace | None = None) -> Predictors:
        """Load a bundle saved by :meth:`save` (each predictor via ``load_predictor``).

        Raises:
            UnsafeFileError: pickle-like files, or a predictor or archive named outside the
                bundle directory.
            IncompatibleArtifactError: a malformed ``bundle.json`` or archive, or a predictor
                that does not load or does not belong to the bundle.
        """
        directory = Path(path)
        index_path, index, fingerprint, names = _read_index(directory)
        loaded = []
        for i, name in enumerate(names):
            predictor_dir = resolve_inside(
                directory, name, file=index_path, key=f"predictors[{i}]"
            )
            if not predictor_dir.is_dir():
                raise IncompatibleArtifactError(
                    f"{index_path}: predictors[{i}]={name!r} is not a predictor directory"
                )
            predictor = load_predictor(predictor_dir, space=space)
            if predictor.name != name:
                raise IncompatibleArtifactError(
                    f"{predictor_dir}: holds the predictor {predictor.name!r}, but {index_path} "
                    f"lists it as {name!r}"
                )
            if predictor.space_fingerprint != fingerprint:
                raise IncompatibleArtifactError(
                    f"{predictor_dir}: space fingerprint {predictor.space_fingerprint} differs "
                    f"from the bundle's {fingerprint}"
                )
            loaded.append(predictor)
        archive_path, archive = _read_bundle_archive(directory, index_path, index)
        try:
            return cls(loaded, archive=archive)
        except IncompatibleArtifactError:
            raise
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            raise IncompatibleArtifactError(f"{archive_path}: {exc}") from exc


def check_record(space: SearchSpace, index: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """An archive record with its config validated by ``space`` and its metrics as floats."""
    if not isinstance(record, Mapping) or set(record) != {"config", "metrics"}:
        raise ConfigError(
            f"archive[{index}] must have exactly the keys ['config', 'metrics'], got "
            f"{sorted(record) if isinstance(record, Mapping) else type(record).__name__}"
        )
    config = space.validate(record["config"])
    metrics = {str(k): float(v) for k, v in dict(record["metrics"]).items()}
    return {"config": config.to_dict(), "metrics": metrics}


def best_in_archive(
    archive: Sequence[Mapping[str, Any]],
    *,
    target: str,
    max_latency_ms: float,
    objective: str = "top1",
) -> dict[str, Any] | None:
    """Record of ``archive`` maximising ``objective`` with ``latency_ms@target <= max_latency_ms``.

    See :meth:`Predictors.best`.
    """
    if not archive:
        raise ConfigError(
            f"this bundle has no Pareto archive ({ARCHIVE_FILE}); build one with "
            "predictors.bundle.build_archive or store the search's front"
        )
    if not math.isfinite(max_latency_ms) or max_latency_ms <= 0:
        raise ConfigError(f"max_latency_ms={max_latency_ms!r} must be a positive number")
    latency_key = f"{LATENCY_METRIC}@{target}"
    available = sorted({k.partition("@")[2] for r in archive for k in r["metrics"] if "@" in k})
    if not any(latency_key in r["metrics"] for r in archive):
        raise ConfigError(format_choice_error("target", target, available))
    objectives = sorted({k for r in archive for k in r["metrics"]})
    if not any(objective in r["metrics"] for r in archive):
        raise ConfigError(format_choice_error("objective", objective, objectives))
    feasible = [
        r
        for r in archive
        if latency_key in r["metrics"]
        and objective in r["metrics"]
        and r["metrics"][latency_key] <= max_latency_ms
    ]
    if not feasible:
        return None
    # Highest objective; ties go to the lower latency.
    best = max(feasible, key=lambda r: (r["metrics"][objective], -r["metrics"][latency_key]))
    return {"config": dict(best["config"]), "metrics": dict(best["metrics"])}


def _read_index(directory: Path) -> tuple[Path, dict[str, Any], str, list[Any]]:
    """``bundle.json`` checked: its path, content, space fingerprint and predictor names."""
    index_path = directory / BUNDLE_FILE
    if not index_path.is_file():
        raise MissingArtifactError(
            f"{directory} is not a predictor bundle: {BUNDLE_FILE} is missing"
        )
    refuse_unsafe_files(directory)
    index = read_json_object(index_path, what="predictor bundle index")
    if index.get("format") != "nas-predictors":
        raise IncompatibleArtifactError(
            f"{index_path} is not a bundle index: format={index.get('format')!r} is not "
            "'nas-predictors'"
        )
    version = index.get("format_version", BUNDLE_VERSION)  # absent in the first bundles
    if isinstance(version, bool) or version != BUNDLE_VERSION:
        raise IncompatibleArtifactError(
            f"{index_path}: format_version={version!r} is not one of [{BUNDLE_VERSION}]"
        )
    fingerprint = require(index, "space_fingerprint", str, file=index_path)
    names = require(index, "predictors", list, file=index_path)
    if not names:
        raise IncompatibleArtifactError(f"{index_path}: predictors is empty")
    repeated = sorted({str(n) for n in names if names.count(n) > 1})
    if repeated:
        raise IncompatibleArtifactError(f"{index_path}: predictors lists {repeated} twice")
    return index_path, index, fingerprint, names


def _read_bundle_archive(
    directory: Path, index_path: Path, index: Mapping[str, Any]
) -> tuple[Path, list[dict[str, Any]] | None]:
    """The archive ``bundle.json`` names (``None`` if it names none) and the path errors name."""
    archive_name = require(index, "archive", (str, type(None)), file=index_path)
    archive = None
    archive_path = index_path
    if archive_name is not None:
        archive_path = resolve_inside(directory, archive_name, file=index_path, key="archive")
        if not archive_path.is_file():
            raise IncompatibleArtifactError(f"{index_path}: archive {archive_name!r} is missing")
        archive = read_archive(archive_path)
    return archive_path, archive


class BundleArchive:
    """A bundle's Pareto archive and space without its models: what ``nas best`` answers from.

    Made by :func:`load_archive`; ``best`` answers as :meth:`Predictors.best` does.
    """

    def __init__(
        self, space: SearchSpace, names: Sequence[str], archive: Sequence[Mapping[str, Any]]
    ) -> None:
        self.space = space
        self.names = tuple(names)
        self.archive = [check_record(space, i, r) for i, r in enumerate(archive)]

    def best(
        self, *, target: str, max_latency_ms: float, objective: str = "top1"
    ) -> dict[str, Any] | None:
        """See :meth:`Predictors.best`."""
        return best_in_archive(
            self.archive, target=target, max_latency_ms=max_latency_ms, objective=objective
        )


def load_archive(
    path: str | os.PathLike[str], *, space: SearchSpace | None = None
) -> BundleArchive:
    """The archive of a bundle saved by :meth:`Predictors.save`, its models checked, not rebuilt.

    The bundle is checked as :meth:`Predictors.load` checks it, every predictor by
    :func:`~predictors.persistence.check_predictor` (manifest, versions, space, model path,
    sha256, no pickled content), but no model is rebuilt, so neither scikit-learn nor skops is
    imported. Raises what :meth:`Predictors.load` raises for those checks.
    """
    directory = Path(path)
    index_path, index, fingerprint, names = _read_index(directory)
    rebuilt = space
    for i, name in enumerate(names):
        predictor_dir = resolve_inside(directory, name, file=index_path, key=f"predictors[{i}]")
        if not predictor_dir.is_dir():
            raise IncompatibleArtifactError(
                f"{index_path}: predictors[{i}]={name!r} is not a predictor directory"
            )
        manifest = check_predictor(predictor_dir, space=space)
        metric, target = manifest["metric"], manifest["target"]
        found = metric if target is None else f"{metric}@{target}"
        if found != name:
            raise IncompatibleArtifactError(
                f"{predictor_dir}: holds the predictor {found!r}, but {index_path} "
                f"lists it as {name!r}"
            )
        saved = manifest["space"]["fingerprint"]
        if saved != fingerprint:
            raise IncompatibleArtifactError(
                f"{predictor_dir}: space fingerprint {saved} differs "
                f"from the bundle's {fingerprint}"
            )
        if rebuilt is None:
            try:
                rebuilt = space_from_schema(manifest["space"])
            except (ConfigError, KeyError, TypeError, ValueError) as exc:
                raise IncompatibleArtifactError(
                    f"{predictor_dir}: the manifest's space cannot be rebuilt "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
    assert rebuilt is not None  # names is never empty
    archive_path, archive = _read_bundle_archive(directory, index_path, index)
    try:
        return BundleArchive(rebuilt, names, archive or [])
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        raise IncompatibleArtifactError(f"{archive_path}: {exc}") from exc


def write_archive(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> Path:
    """Write archive records as JSONL atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            for record in records:
                fh.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_archive(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read archive records from JSONL (blank lines ignored).

    Raises:
        IncompatibleArtifactError: the file is unreadable, not UTF-8, or a line is not a JSON
            object (the message names the line).
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise IncompatibleArtifactError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise IncompatibleArtifactError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise IncompatibleArtifactError(f"{path}:{lineno} is not valid JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise IncompatibleArtifactError(
                f"{path}:{lineno} is a JSON {type(record).__name__}, not a record object"
            )
        records.append(record)
    return records


def build_archive(
    bundle: Predictors,
    configs: Sequence[SubnetConfig],
    *,
    objective: str = "top1",
) -> list[dict[str, Any]]:
    """Predicted Pareto archive: per latency target, the (max objective, min latency) front.

    The union of the per-target fronts (pymoo non-dominated sorting via :mod:`nas.pareto`) holds
    the answer of :meth:`Predictors.best` for every latency bound on every target.
    """
    from nas.pareto import non_dominated

    latency_names = [n for n in bundle.names if n.startswith(f"{LATENCY_METRIC}@")]
    if objective not in bundle.names:
        raise ConfigError(format_choice_error("objective", objective, list(bundle.names)))
    if not latency_names:
        raise ConfigError(f"the bundle has no '{LATENCY_METRIC}@<target>' predictor")
    predictions = bundle.predict(configs)
    keep: set[int] = set()
    for latency in latency_names:
        F = np.array([[-p[objective], p[latency]] for p in predictions])
        keep.update(int(i) for i in non_dominated(F))
    return [
        {"config": bundle.space.validate(configs[i]).to_dict(), "metrics": predictions[i]}
        for i in sorted(keep)
    ]
