"""Save and load predictors without pickle: ``skops.io`` with an explicit trusted list + manifest.

A saved predictor is a directory::

    model.skops                  # the fitted Pipeline (skops format: a zip of JSON + arrays)
    manifest.json                # versions, space schema + fingerprint, features, metric, quality
    quality.json                 # the held-out QualityReport (also inside the manifest)
    predicted_vs_measured.png    # optional plot of the held-out predictions

Loading refuses, with a message naming what differs:

* a model file that is not a skops archive (a pickle, say) or whose hash differs from the manifest,
  and any pickle-like file (``*.pkl``, ``*.pickle``, ``*.joblib``) in the directory;
* types outside :data:`TRUSTED_TYPES` inside the archive;
* a manifest written by other scikit-learn / skops versions (major.minor), or for another
  search space (fingerprint and the dimensions that differ).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
import skops.io as sio
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.space import Choice, SearchSpace
from predictors.features import ENCODINGS, feature_schema
from predictors.predictor import Predictor
from predictors.quality import QualityReport, plot_predictions, write_json_atomic

FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
QUALITY_FILE = "quality.json"
PLOT_FILE = "predicted_vs_measured.png"
PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".dill")

TRUSTED_TYPES: tuple[str, ...] = (
    "predictors.features.cell_disconnected",
    "predictors.features.cell_path_lengths",
    "predictors.features.mask_inactive",
    "predictors.features.prune_cell",
    "predictors.features.scale_ordinal",
    "predictors.models.MeanStdEnsemble",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)
"""Types beyond skops' defaults that a predictor archive may contain; nothing else loads."""


# -- search-space schema ------------------------------------------------------------------------
def space_schema(space: SearchSpace) -> dict[str, Any]:
    """JSON description of a space: name, fingerprint and every dimension."""
    return {
        "name": space.name,
        "fingerprint": space.fingerprint(),
        "dims": [
            {
                "name": d.name,
                "options": list(d.options),
                "ordered": d.ordered,
                "active_if": list(d.active_if) if d.active_if is not None else None,
            }
            for d in space.dims
        ],
    }


def space_from_schema(schema: Mapping[str, Any]) -> SearchSpace:
    """Rebuild the dimensions of a space from :func:`space_schema` (enough to validate configs)."""
    dims = tuple(
        Choice(
            str(d["name"]),
            tuple(d["options"]),
            ordered=bool(d["ordered"]),
            active_if=(str(d["active_if"][0]), int(d["active_if"][1]))
            if d["active_if"] is not None
            else None,
        )
        for d in schema["dims"]
    )
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
            for field in ("options", "ordered", "active_if"):
                if a[name][field] != b[name][field]:
                    parts.append(
                        f"{name}.{field}: saved {a[name][field]!r}, given {b[name][field]!r}"
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


def check_versions(saved: Mapping[str, str], *, where: str) -> None:
    """Raise :class:`IncompatibleArtifactError` naming each library whose version differs."""
    current = library_versions()
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


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _write_bytes_atomic(
        model_path, sio.dumps(predictor.pipeline, compression=zipfile.ZIP_DEFLATED)
    )
    untrusted = sorted(set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES))
    if untrusted:
        model_path.unlink()
        raise UnsafeFileError(
            "the pipeline contains types outside predictors.persistence.TRUSTED_TYPES: "
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
def _looks_like_pickle(head: bytes) -> bool:
    return head[:1] == b"\x80" or (head[:1] in (b"c", b"(", b"]", b"}") and b"\n" in head)


def refuse_unsafe_files(directory: Path) -> None:
    """Raise :class:`UnsafeFileError` if the directory holds pickle-like files."""
    for file in sorted(directory.iterdir()):
        if file.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeFileError(
                f"{file} looks like a pickle ({file.suffix}); predictors are only loaded from "
                f"skops archives with a manifest, so this directory is refused"
            )


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check the manifest of a saved predictor (no model is loaded)."""
    directory = Path(path)
    if directory.is_file():
        head = directory.read_bytes()[:64]
        kind = "a pickle" if _looks_like_pickle(head) else "a file"
        raise UnsafeFileError(
            f"{directory} is {kind}, not a predictor directory with {MANIFEST_FILE} and "
            f"{MODEL_FILE}; pickles are never loaded"
        )
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ConfigError(f"{directory} is not a saved predictor: {MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "nas-predictor":
        raise ConfigError(
            f"{manifest_path} is not a predictor manifest (format != 'nas-predictor')"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IncompatibleArtifactError(
            f"{manifest_path}: format_version={manifest.get('format_version')!r} is not one of "
            f"[{FORMAT_VERSION}]"
        )
    if manifest.get("features", {}).get("encoding") not in ENCODINGS:
        raise ConfigError(f"{manifest_path}: features.encoding is not one of {list(ENCODINGS)}")
    return manifest


def load_predictor(path: str | os.PathLike[str], *, space: SearchSpace | None = None) -> Predictor:
    """Load a predictor saved by :func:`save_predictor`.

    Args:
        path: The predictor directory.
        space: If given, the saved search space must match it exactly (fingerprint); otherwise
            the space is rebuilt from the manifest's schema.

    Raises:
        UnsafeFileError: pickle-like files, a model that is not a skops archive, a hash mismatch
            or untrusted types in the archive.
        IncompatibleArtifactError: other library versions or another search space.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    refuse_unsafe_files(directory)
    check_versions(manifest.get("versions", {}), where=str(directory))
    saved_schema = manifest["space"]
    if space is not None:
        current = space_schema(space)
        if current["fingerprint"] != saved_schema["fingerprint"]:
            raise IncompatibleArtifactError(
                f"{directory}: predictor was trained on another search space: "
                f"{describe_space_difference(saved_schema, current)}"
            )
    model_path = directory / str(manifest.get("model_file", MODEL_FILE))
    if model_path.parent != directory or not model_path.is_file():
        raise ConfigError(f"{directory}: model file {model_path.name!r} is missing")
    data = model_path.read_bytes()
    if not zipfile.is_zipfile(model_path):
        kind = "a pickle" if _looks_like_pickle(data[:64]) else "not a skops archive"
        raise UnsafeFileError(f"{model_path} is {kind}; only skops archives are loaded")
    if hashlib.sha256(data).hexdigest() != manifest.get("model_sha256"):
        raise UnsafeFileError(
            f"{model_path} does not match the sha256 recorded in {MANIFEST_FILE}; "
            "the model was replaced after saving"
        )
    try:
        pipeline = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise UnsafeFileError(f"{model_path} contains untrusted types: {exc}") from exc
    if not isinstance(pipeline, Pipeline):
        raise UnsafeFileError(f"{model_path} holds a {type(pipeline).__name__}, not a Pipeline")
    quality = manifest.get("quality")
    return Predictor(
        space=space if space is not None else space_from_schema(saved_schema),
        pipeline=pipeline,
        metric=str(manifest["metric"]),
        target=manifest.get("target"),
        kind=str(manifest.get("kind", "")),
        quality=QualityReport.from_dict(quality) if quality is not None else None,
        space_fingerprint=str(saved_schema["fingerprint"]),
    )
