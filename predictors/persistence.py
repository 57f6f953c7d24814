"""Save and load predictors without pickle: ``skops.io`` with an explicit trusted list + manifest.

A saved predictor is a directory::

    model.skops                  # the fitted Pipeline (skops format: a zip of JSON + arrays)
    manifest.json                # versions, space schema + fingerprint, features, metric, quality
    quality.json                 # the held-out QualityReport (also inside the manifest)
    predicted_vs_measured.png    # optional plot of the held-out predictions

Loading refuses, with a message naming the file and what differs:

* :class:`~nas.errors.UnsafeFileError`: any pickle-like file in the directory (by name, see
  :data:`~nas.artifacts.safe_files.PICKLE_SUFFIXES`, or by content), a ``model_file`` outside the
  directory, a model file that is not a skops archive or whose hash differs from the manifest,
  object arrays or types outside :data:`TRUSTED_TYPES` inside the archive;
* :class:`~nas.errors.IncompatibleArtifactError`: a manifest that is not complete JSON or lacks
  a field or has one of the wrong type, a damaged archive, other scikit-learn / skops versions
  (major.minor), or another search space (fingerprint and the dimensions that differ).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import platform
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.artifacts import safe_files
from nas.artifacts.safe_files import PICKLE_SUFFIXES as PICKLE_SUFFIXES  # re-exported
from nas.artifacts.safe_files import (
    looks_like_pickle,
    read_json_object,
    require,
    require_sha256,
    resolve_inside,
    write_bytes_atomic,
)
from nas.errors import (
    ConfigError,
    IncompatibleArtifactError,
    MissingArtifactError,
    UnsafeFileError,
)
from nas.space import SearchSpace, dimension_from_schema
from predictors.features import ENCODINGS, feature_schema
from predictors.predictor import Predictor
from predictors.quality import QualityReport, plot_predictions, write_json_atomic

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
QUALITY_FILE = "quality.json"
PLOT_FILE = "predicted_vs_measured.png"

TRUSTED_TYPES: tuple[str, ...] = (
    "predictors.features.cell_disconnected",
    "predictors.features.cell_path_lengths",
    "predictors.features.mask_inactive",
    "predictors.features.prune_cell",
    "predictors.features.scale_numeric",
    "predictors.features.scale_ordinal",
    "predictors.models.MeanStdEnsemble",
    "predictors.user_features.apply_user_features",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)
"""Types beyond skops' defaults that a predictor archive may contain; nothing else loads."""

ESTIMATORS: tuple[str, ...] = (
    "sklearn.compose.ColumnTransformer",
    "sklearn.compose.TransformedTargetRegressor",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.ensemble.RandomForestRegressor",
    "sklearn.linear_model.Ridge",
    "sklearn.neural_network.MLPRegressor",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing.FunctionTransformer",
    "sklearn.preprocessing.OneHotEncoder",
    "sklearn.preprocessing.StandardScaler",
    "sklearn.tree.DecisionTreeRegressor",
)
"""The scikit-learn estimators a predictor pipeline is built from (public import paths).

Of scikit-learn's estimators only these are trusted in an archive: they are what skops is given
as its default estimator list (:func:`_skops_io`), and :func:`_foreign_sklearn_types` refuses
any other scikit-learn class named in an archive's schema, however skops was imported."""


def _estimator_classes() -> list[type]:
    classes = []
    for path in ESTIMATORS:
        module, _, name = path.rpartition(".")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def _known_estimators(type_filter: object = None) -> list[tuple[str, type]]:
    """``sklearn.utils.all_estimators()`` narrowed to :data:`ESTIMATORS` (skops calls it so)."""
    return [(cls.__name__, cls) for cls in _estimator_classes()]


def _skops_io() -> Any:
    """``skops.io``, imported so that its default trusted estimators are :data:`ESTIMATORS`.

    At import, skops lists every scikit-learn estimator as trusted by calling
    ``sklearn.utils.all_estimators()``, which imports each scikit-learn module (and torch,
    through scikit-learn's array-API shims): most of the start-up of ``nas predict``. While
    skops is imported here that function answers :data:`ESTIMATORS` instead, so skops trusts
    fewer types, never more; its other defaults (primitives, NumPy, its own loss nodes) are
    its own. If ``skops.io`` was imported before, it is used as it is, and
    :func:`_foreign_sklearn_types` still refuses every estimator outside :data:`ESTIMATORS`.
    """
    if "skops.io" not in sys.modules:
        import sklearn.utils

        original = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _known_estimators  # read once, by skops' import
        try:
            importlib.import_module("skops.io")
        finally:
            sklearn.utils.all_estimators = original
    return sys.modules["skops.io"]


def _schema_types(node: Any, found: set[str]) -> set[str]:
    """Every ``module.class`` an archive's schema names (read as JSON, nothing imported)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module, name = item.get("__module__"), item.get("__class__")
            if isinstance(module, str) and isinstance(name, str):
                found.add(f"{module}.{name}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _foreign_sklearn_types(schema: Any) -> list[str]:
    """scikit-learn classes in a schema outside :data:`ESTIMATORS` and :data:`TRUSTED_TYPES`.

    The loss objects of ``sklearn._loss`` are left to skops, which rebuilds them from its own
    fixed list.
    """
    allowed = {_type_name(cls) for cls in _estimator_classes()} | set(TRUSTED_TYPES)
    return sorted(
        name
        for name in _schema_types(schema, set())
        if name.startswith("sklearn.")
        and not name.startswith("sklearn._loss.")
        and name not in allowed
    )


# -- search-space schema ------------------------------------------------------------------------
def space_schema(space: SearchSpace) -> dict[str, Any]:
    """JSON description of a space: name, fingerprint and every dimension."""
    return {
        "name": space.name,
        "fingerprint": space.fingerprint(),
        "dims": [d.schema() for d in space.dims],
    }


def space_from_schema(schema: Mapping[str, Any]) -> SearchSpace:
    """Rebuild the dimensions of a space from :func:`space_schema` (enough to validate configs)."""
    dims = tuple(dimension_from_schema(d) for d in schema["dims"])
    return SearchSpace(str(schema["name"]), dims)


def describe_space_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Human-readable list of what differs between two space schemas."""
    parts: list[str] = []
    if saved["name"] != current["name"]:
        parts.append(f"name: saved {saved['name']!r}, given {current['name']!r}")
    a = {d["name"]: d for d in saved["dims"]}
    b = {d["name"]: d for d in current["dims"]}
    missing = [n for n in a if n not in b]
    extra = [n for n in b if n not in a]
    if missing:
        parts.append(f"dimensions only in the saved space: {missing}")
    if extra:
        parts.append(f"dimensions only in the given space: {extra}")
    for name in a:
        if name in b:
            for field in ("options", "numeric", "ordered", "active_if"):
                if a[name].get(field) != b[name].get(field):
                    parts.append(
                        f"{name}.{field}: saved {a[name].get(field)!r}, "
                        f"given {b[name].get(field)!r}"
                    )
    if not parts and [d["name"] for d in saved["dims"]] != [d["name"] for d in current["dims"]]:
        parts.append("dimension order differs")
    if not parts:
        parts.append(
            f"fingerprint: saved {saved['fingerprint']}, given {current['fingerprint']} "
            "(architecture metadata differs)"
        )
    return "; ".join(parts)


# -- versions -------------------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    """Versions recorded in a manifest."""
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


CHECKED_LIBRARIES: tuple[str, ...] = ("scikit-learn", "skops")
"""Libraries whose major.minor version must match to load a model."""


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


_MODULES = {"scikit-learn": "sklearn", "skops": "skops"}


def _running_version(library: str) -> str:
    """Version of ``library`` (an entry of :data:`CHECKED_LIBRARIES`), imported or installed."""
    module = sys.modules.get(_MODULES[library])
    if module is not None:
        return str(module.__version__)
    from importlib.metadata import version

    return version(library)  # without importing it: ``nas best`` never needs scikit-learn


def check_versions(saved: Mapping[str, str], *, where: str) -> None:
    """Raise :class:`IncompatibleArtifactError` naming each library whose version differs."""
    current = {lib: _running_version(lib) for lib in CHECKED_LIBRARIES}
    diffs = [
        f"{lib} saved with {saved.get(lib)!s}, running {current[lib]}"
        for lib in CHECKED_LIBRARIES
        if saved.get(lib) is None or _major_minor(str(saved[lib])) != _major_minor(current[lib])
    ]
    if diffs:
        raise IncompatibleArtifactError(
            f"{where}: library versions differ ({'; '.join(diffs)}); retrain the predictor "
            "or install the versions it was saved with"
        )


# -- save ---------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def encoding_of(pipeline: Pipeline) -> tuple[str, bool, bool]:
    """Feature encoding, cell pruning and cell paths of a pipeline from :func:`make_predictor`."""
    columns = pipeline.named_steps["features"].named_steps["columns"]
    names = {name for name, _, _ in columns.transformers}
    return ("ordinal" if "ordinal" in names else "onehot"), "effective" in names, "paths" in names


def save_predictor(  # noqa: D417
    predictor: Predictor,
    path: str | os.PathLike[str],
    *,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write ``predictor`` to the directory ``path`` (created; files replaced atomically).

    Args:
        held_out: ``(y_true, y_pred)`` of the held-out set, plotted to :data:`PLOT_FILE`.

    Returns:
        The directory.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    encoding, cell_pruning, cell_paths = encoding_of(predictor.pipeline)
    model_path = directory / MODEL_FILE
    sio = _skops_io()
    write_bytes_atomic(model_path, sio.dumps(predictor.pipeline, compression=zipfile.ZIP_DEFLATED))
    untrusted = sorted(set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES))
    with zipfile.ZipFile(model_path) as archive:
        untrusted += _foreign_sklearn_types(json.loads(archive.read("schema.json")))
    if untrusted:
        model_path.unlink()
        raise UnsafeFileError(
            "the pipeline contains types outside predictors.persistence.TRUSTED_TYPES "
            "and ESTIMATORS: "
            f"{untrusted}"
        )
    quality = predictor.quality.to_dict() if predictor.quality is not None else None
    if quality is not None:
        write_json_atomic(directory / QUALITY_FILE, quality)
    if held_out is not None:
        plot_predictions(held_out[0], held_out[1], directory / PLOT_FILE, report=predictor.quality)
    manifest = {
        "format": "nas-predictor",
        "format_version": FORMAT_VERSION,
        "metric": predictor.metric,
        "target": predictor.target,
        "name": predictor.name,
        "kind": predictor.kind,
        "model_file": MODEL_FILE,
        "model_sha256": _sha256(model_path),
        "trusted_types": list(TRUSTED_TYPES),
        "versions": library_versions(),
        "space": {**space_schema(predictor.space), "fingerprint": predictor.space_fingerprint},
        "features": feature_schema(predictor.space, encoding, cell_pruning, cell_paths),  # type: ignore[arg-type]
        "quality": quality,
    }
    write_json_atomic(directory / MANIFEST_FILE, manifest)  # last: it vouches for the model
    return directory


# -- load ---------------------------------------------------------------------------------------
LOADS = "a skops archive named by manifest.json"


def _looks_like_pickle(head: bytes) -> bool:
    return looks_like_pickle(head, complete=False)


def refuse_unsafe_files(directory: Path) -> None:
    """Raise :class:`UnsafeFileError` if the directory holds pickle-like files."""
    safe_files.refuse_unsafe_files(directory, loads=LOADS)


def _check_space_schema(schema: Any, *, file: Path) -> None:
    if not isinstance(schema, Mapping):
        raise IncompatibleArtifactError(f"{file}: space must be an object")
    require(schema, "name", str, file=file, prefix="space.")
    require(schema, "fingerprint", str, file=file, prefix="space.")
    dims = require(schema, "dims", list, file=file, prefix="space.")
    for i, dim in enumerate(dims):
        prefix = f"space.dims[{i}]."
        require(dim, "name", str, file=file, prefix=prefix)
        if isinstance(dim, Mapping) and "numeric" in dim:
            _check_numeric_schema(dim, file=file, prefix=prefix)
        elif not require(dim, "options", list, file=file, prefix=prefix):
            raise IncompatibleArtifactError(f"{file}: {prefix}options is empty")
        require(dim, "ordered", bool, file=file, prefix=prefix)
        active_if = require(dim, "active_if", (list, type(None)), file=file, prefix=prefix)
        if active_if is not None and (
            len(active_if) != 2
            or not isinstance(active_if[0], str)
            or not isinstance(active_if[1], int)
            or isinstance(active_if[1], bool)
        ):
            raise IncompatibleArtifactError(
                f"{file}: {prefix}active_if must be [dimension name, integer], got {active_if!r}"
            )


def _check_numeric_schema(dim: Mapping[str, Any], *, file: Path, prefix: str) -> None:
    bounds = require(dim, "numeric", dict, file=file, prefix=prefix)
    for key in ("low", "high"):
        value = require(bounds, key, (int, float), file=file, prefix=f"{prefix}numeric.")
        if isinstance(value, bool) or not np.isfinite(value):
            raise IncompatibleArtifactError(f"{file}: {prefix}numeric.{key} must be a number")
    require(bounds, "integer", bool, file=file, prefix=f"{prefix}numeric.")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check the manifest of a saved predictor (no model is loaded).

    Raises:
        UnsafeFileError: ``path`` is a file (a pickle, say), not a predictor directory.
        IncompatibleArtifactError: the manifest is missing, not JSON, of another format or
            version, or a field is missing or of the wrong type.
    """
    directory = Path(path)
    if directory.is_file():
        with open(directory, "rb") as fh:
            head = fh.read(safe_files.HEAD_BYTES)
        kind = "a pickle" if _looks_like_pickle(head) else "a file"
        raise UnsafeFileError(
            f"{directory} is {kind}, not a predictor directory with {MANIFEST_FILE} and "
            f"{MODEL_FILE}; pickles are never loaded"
        )
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise MissingArtifactError(
            f"{directory} is not a saved predictor: {MANIFEST_FILE} is missing"
        )
    manifest = read_json_object(manifest_path, what="predictor manifest")
    if manifest.get("format") != "nas-predictor":
        raise IncompatibleArtifactError(
            f"{manifest_path} is not a predictor manifest: format={manifest.get('format')!r} "
            "is not 'nas-predictor'"
        )
    if require(manifest, "format_version", int, file=manifest_path) != FORMAT_VERSION:
        raise IncompatibleArtifactError(
            f"{manifest_path}: format_version={manifest['format_version']!r} is not one of "
            f"[{FORMAT_VERSION}]"
        )
    for key, kinds in (
        ("metric", str),
        ("target", (str, type(None))),
        ("kind", str),
        ("model_file", str),
        ("versions", dict),
        ("space", dict),
        ("features", dict),
        ("quality", (dict, type(None))),
    ):
        require(manifest, key, kinds, file=manifest_path)
    require_sha256(manifest, "model_sha256", file=manifest_path)
    for lib in CHECKED_LIBRARIES:
        require(manifest["versions"], lib, str, file=manifest_path, prefix="versions.")
    _check_space_schema(manifest["space"], file=manifest_path)
    features = manifest["features"]
    encoding = require(features, "encoding", str, file=manifest_path, prefix="features.")
    if encoding not in ENCODINGS:
        raise IncompatibleArtifactError(
            f"{manifest_path}: features.encoding={encoding!r} is not one of {list(ENCODINGS)}"
        )
    return manifest


def _read_schema(data: bytes, model_path: Path) -> Any:
    """The archive's ``schema.json`` as JSON (nothing built); a failure is a damaged archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return json.loads(archive.read("schema.json"))
    except Exception as exc:  # a damaged zip or schema fails in many ways, all of them damage
        raise IncompatibleArtifactError(
            f"{model_path} is a damaged skops archive ({type(exc).__name__}: {exc})"
        ) from exc


def _load_pipeline(data: bytes, model_path: Path) -> Pipeline:
    foreign = _foreign_sklearn_types(_read_schema(data, model_path))
    if foreign:
        raise UnsafeFileError(f"{model_path} contains untrusted types: {foreign}")
    sio = _skops_io()
    import skops
    from sklearn.pipeline import Pipeline
    from skops.io.exceptions import UntrustedTypesFoundException

    try:  # skops audits every type against its defaults and TRUSTED_TYPES before building
        pipeline = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise UnsafeFileError(f"{model_path} contains untrusted types: {exc}") from exc
    except Exception as exc:  # skops rebuilds objects from a damaged schema in many ways
        raise IncompatibleArtifactError(
            f"{model_path} cannot be rebuilt by skops {skops.__version__} "
            f"({type(exc).__name__}: {exc}); the archive is damaged"
        ) from exc
    if not isinstance(pipeline, Pipeline):
        raise UnsafeFileError(f"{model_path} holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def _checked_model(
    path: str | os.PathLike[str], space: SearchSpace | None
) -> tuple[dict[str, Any], Path, bytes]:
    """Every check of :func:`load_predictor` short of rebuilding: manifest, model path, bytes."""
    directory = Path(path)
    if directory.is_dir():
        refuse_unsafe_files(directory)
    manifest = read_manifest(directory)
    manifest_path = directory / MANIFEST_FILE
    check_versions(manifest["versions"], where=str(directory))
    saved_schema = manifest["space"]
    if space is not None:
        current = space_schema(space)
        if current["fingerprint"] != saved_schema["fingerprint"]:
            raise IncompatibleArtifactError(
                f"{directory}: predictor was trained on another search space: "
                f"{describe_space_difference(saved_schema, current)}"
            )
    model_path = resolve_inside(
        directory, manifest["model_file"], file=manifest_path, key="model_file"
    )
    if not model_path.is_file():
        raise IncompatibleArtifactError(
            f"{manifest_path}: model_file {manifest['model_file']!r} is missing"
        )
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise IncompatibleArtifactError(
            f"{model_path} cannot be read: {exc.strerror or exc}"
        ) from exc
    if not data.startswith(b"PK\x03\x04") or not zipfile.is_zipfile(io.BytesIO(data)):
        kind = "a pickle" if _looks_like_pickle(data[:4096]) else "not a skops archive"
        raise UnsafeFileError(f"{model_path} is {kind}; only skops archives are loaded")
    if hashlib.sha256(data).hexdigest() != manifest["model_sha256"]:
        raise UnsafeFileError(
            f"{model_path} does not match the sha256 recorded in {MANIFEST_FILE}; "
            "the model was replaced after saving"
        )
    found = safe_files.zip_pickle_content(io.BytesIO(data))  # the bytes that are loaded
    if found is not None:
        raise UnsafeFileError(f"{model_path} is a pickle ({found}); only skops archives load")
    return manifest, model_path, data


def check_predictor(
    path: str | os.PathLike[str], *, space: SearchSpace | None = None
) -> dict[str, Any]:
    """The manifest of a saved predictor, after every check of :func:`load_predictor` but one.

    Pickle-like files, the manifest, library versions, the space, the model path, its sha256
    and pickled content inside it are checked as :func:`load_predictor` checks them; the model
    is not rebuilt (so neither audited by skops nor imported): for a caller that answers from
    the manifest or the bundle's archive alone, such as ``nas best``.
    """
    return _checked_model(path, space)[0]


def load_predictor(path: str | os.PathLike[str], *, space: SearchSpace | None = None) -> Predictor:
    """Load a predictor saved by :func:`save_predictor`.

    Args:
        path: The predictor directory.
        space: If given, the saved search space must match it exactly (fingerprint); otherwise
            the space is rebuilt from the manifest's schema.

    Raises:
        UnsafeFileError: pickle-like files, a model path outside the directory, a model that is
            not a skops archive, a hash mismatch or untrusted types in the archive.
        IncompatibleArtifactError: a malformed manifest or archive, other library versions or
            another search space.
    """
    directory = Path(path)
    manifest, model_path, data = _checked_model(directory, space)
    saved_schema = manifest["space"]
    pipeline = _load_pipeline(data, model_path)
    try:
        rebuilt = space if space is not None else space_from_schema(saved_schema)
        quality = manifest["quality"]
        return Predictor(
            space=rebuilt,
            pipeline=pipeline,
            metric=str(manifest["metric"]),
            target=manifest["target"],
            kind=manifest["kind"],
            quality=QualityReport.from_dict(quality) if quality is not None else None,
            space_fingerprint=str(saved_schema["fingerprint"]),
        )
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, IncompatibleArtifactError):
            raise
        raise IncompatibleArtifactError(
            f"{directory}: the manifest and model do not make a predictor "
            f"({type(exc).__name__}: {exc})"
        ) from exc
