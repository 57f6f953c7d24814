"""Save and load transferred latency predictors as one JSON manifest (no pickle, no archive).

A saved transfer predictor is a directory holding ``manifest.json``: versions, the space schema
and fingerprint, the weights over the bank devices, the predicted log-latency of every bank
architecture and the linear fallback for the others, and the leave-one-out quality. Everything is
numbers and strings, so loading builds no object beyond the space's feature transformer.

Saving writes nothing unless the whole manifest is finite JSON; a folder it had to create is
removed again if the write fails.

Loading refuses, naming the file and the field: a path that is a file (a pickle, say), a
manifest that is not JSON (or nested too deeply to parse) or of another format or version, a
field missing or of the wrong type or length, a non-finite number, negative or absurd weights
(beyond :data:`MAX_WEIGHT`) or log-latencies, ``n_train`` < 1, repeated device names, or (with
``space=``) another search space.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from nas.artifacts.safe_files import require, write_bytes_atomic
from nas.errors import IncompatibleArtifactError, MissingArtifactError, UnsafeFileError
from nas.space import SearchSpace
from predictors.persistence import describe_space_difference, space_from_schema, space_schema
from predictors.quality import QualityReport
from predictors.transfer.device_bank import REPRESENTATIONS
from predictors.transfer.few_shot import KIND, MAX_ABS_LOG_LATENCY, TransferPredictor

FORMAT = "nas-transfer-predictor"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 predates representations: its weights are on the raw (measured) latencies."""
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
"""Larger manifests are refused before parsing (a bank of a million rows is ~60 MiB)."""
MAX_WEIGHT = 1e3
"""Largest weight of a bank device on log-latency (a fit gives about 0..10: a power law)."""


def save_transfer(predictor: TransferPredictor, path: str | os.PathLike[str]) -> Path:
    """Write ``predictor`` to the directory ``path`` (created; manifest replaced atomically).

    Raises:
        ValueError: a non-finite number (nothing is written, no folder is left behind).
    """
    directory = Path(path)
    payload = json.dumps(_manifest(predictor), indent=2, allow_nan=False) + "\n"  # before disk
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        write_bytes_atomic(directory / MANIFEST_FILE, payload.encode())
    except BaseException:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def _manifest(predictor: TransferPredictor) -> dict[str, Any]:
    quality = predictor.quality.to_dict() if predictor.quality is not None else None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metric": predictor.metric,
        "target": predictor.target,
        "name": predictor.name,
        "kind": KIND,
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "space": {**space_schema(predictor.space), "fingerprint": predictor.space_fingerprint},
        "features": {"encoding": "onehot", "n_features": len(predictor.fallback_coef)},
        "model": {
            "devices": list(predictor.devices),
            "representation": predictor.representation,
            "weights": predictor.weights.tolist(),
            "intercept": float(predictor.intercept),
            "alpha": float(predictor.alpha),
            "lam": None if predictor.lam is None else float(predictor.lam),
            "n_train": int(predictor.n_train),
            "bank_rows": predictor.bank_X.tolist(),
            "bank_log_pred": predictor.bank_log_pred.tolist(),
            "fallback_coef": predictor.fallback_coef.tolist(),
            "fallback_intercept": float(predictor.fallback_intercept),
        },
        "quality": quality,
    }


def _vector(model: Mapping[str, Any], key: str, *, file: Path, length: int | None) -> np.ndarray:
    values = require(model, key, list, file=file, prefix="model.")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise IncompatibleArtifactError(f"{file}: model.{key} must be a list of numbers")
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise IncompatibleArtifactError(f"{file}: model.{key} has non-finite values")
    if length is not None and len(array) != length:
        raise IncompatibleArtifactError(
            f"{file}: model.{key} has {len(array)} values, expected {length}"
        )
    return array


def _number(model: Mapping[str, Any], key: str, *, file: Path) -> float:
    value = float(require(model, key, (int, float), file=file, prefix="model."))
    if not math.isfinite(value):
        raise IncompatibleArtifactError(f"{file}: model.{key} is not finite")
    return value


def _weights(model: Mapping[str, Any], *, file: Path, length: int) -> np.ndarray:
    weights = _vector(model, "weights", file=file, length=length)
    if ((weights < 0) | (weights > MAX_WEIGHT)).any():
        bad = float(weights[(weights < 0) | (weights > MAX_WEIGHT)][0])
        raise IncompatibleArtifactError(
            f"{file}: model.weights holds {bad!r}; weights must be in 0..{MAX_WEIGHT:g}"
        )
    return weights


def _log_latencies(model: Mapping[str, Any], *, file: Path, length: int) -> np.ndarray:
    values = _vector(model, "bank_log_pred", file=file, length=length)
    if np.abs(values).max(initial=0.0) > MAX_ABS_LOG_LATENCY:
        raise IncompatibleArtifactError(
            f"{file}: model.bank_log_pred must be log-milliseconds within "
            f"±{MAX_ABS_LOG_LATENCY:g} (a larger one overflows the prediction)"
        )
    return values


def _n_train(model: Mapping[str, Any], *, file: Path) -> int:
    value = require(model, "n_train", int, file=file, prefix="model.")
    if value < 1:
        raise IncompatibleArtifactError(f"{file}: model.n_train={value!r} must be >= 1")
    return int(value)


def read_transfer_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse the manifest of a saved transfer predictor and check its format (no model built)."""
    directory = Path(path)
    if directory.is_file():
        raise UnsafeFileError(
            f"{directory} is a file, not a transfer-predictor directory with {MANIFEST_FILE}; "
            "pickles are never loaded"
        )
    file = directory / MANIFEST_FILE
    if not file.is_file():
        raise MissingArtifactError(
            f"{directory} is not a saved transfer predictor: {MANIFEST_FILE} is missing"
        )
    if file.stat().st_size > MAX_MANIFEST_BYTES:
        raise IncompatibleArtifactError(f"{file} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompatibleArtifactError(f"{file} is not complete JSON ({exc})") from exc
    except RecursionError as exc:
        raise IncompatibleArtifactError(f"{file} is nested too deeply to be a manifest") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise IncompatibleArtifactError(f"{file}: format={found!r} is not {FORMAT!r}")
    if require(manifest, "format_version", int, file=file) not in READABLE_VERSIONS:
        raise IncompatibleArtifactError(
            f"{file}: format_version={manifest['format_version']!r} is not one of "
            f"{list(READABLE_VERSIONS)}"
        )
    for key, kinds in (
        ("metric", str),
        ("target", str),
        ("space", dict),
        ("model", dict),
        ("quality", (dict, type(None))),
    ):
        require(manifest, key, kinds, file=file)
    space = manifest["space"]
    for key in ("name", "fingerprint"):
        require(space, key, str, file=file, prefix="space.")
    require(space, "dims", list, file=file, prefix="space.")
    return manifest


def load_transfer(
    path: str | os.PathLike[str], *, space: SearchSpace | None = None
) -> TransferPredictor:
    """Load a predictor saved by :func:`save_transfer`.

    Args:
        path: The predictor directory.
        space: If given, the saved space must match it (fingerprint); otherwise the space is
            rebuilt from the manifest's schema.

    Raises:
        UnsafeFileError: ``path`` is a file.
        IncompatibleArtifactError: a malformed manifest or another search space.
    """
    manifest = read_transfer_manifest(path)
    file = Path(path) / MANIFEST_FILE
    saved = manifest["space"]
    if space is not None and space.fingerprint() != saved["fingerprint"]:
        raise IncompatibleArtifactError(
            f"{path}: transfer predictor was fitted on another search space: "
            f"{describe_space_difference(saved, space_schema(space))}"
        )
    model = manifest["model"]
    devices = require(model, "devices", list, file=file, prefix="model.")
    if not devices or not all(isinstance(d, str) and d for d in devices):
        raise IncompatibleArtifactError(f"{file}: model.devices must be non-empty device names")
    if len(set(devices)) != len(devices):
        repeated = next(d for d in devices if devices.count(d) > 1)
        raise IncompatibleArtifactError(f"{file}: model.devices names {repeated!r} twice")
    representation = "raw"
    if manifest["format_version"] >= 2:
        representation = require(model, "representation", str, file=file, prefix="model.")
        if representation not in REPRESENTATIONS:
            raise IncompatibleArtifactError(
                f"{file}: model.representation={representation!r} is not one of "
                f"{list(REPRESENTATIONS)}"
            )
    n_weights = REPRESENTATIONS[representation] * len(devices)
    rows = require(model, "bank_rows", list, file=file, prefix="model.")
    try:
        rebuilt = space if space is not None else space_from_schema(saved)
        X = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(rebuilt.dims))
        if len(X):
            rebuilt.decode_many(X)  # every index in range
        quality = manifest["quality"]
        return TransferPredictor(
            space=rebuilt,
            metric=manifest["metric"],
            target=manifest["target"],
            devices=tuple(devices),
            weights=_weights(model, file=file, length=n_weights),
            intercept=_number(model, "intercept", file=file),
            alpha=_number(model, "alpha", file=file),
            lam=None if model.get("lam") is None else _number(model, "lam", file=file),
            bank_X=X,
            bank_log_pred=_log_latencies(model, file=file, length=len(X)),
            fallback_coef=_vector(model, "fallback_coef", file=file, length=None),
            fallback_intercept=_number(model, "fallback_intercept", file=file),
            n_train=_n_train(model, file=file),
            quality=QualityReport.from_dict(quality) if quality is not None else None,
            representation=representation,
            space_fingerprint=str(saved["fingerprint"]),
        )
    except IncompatibleArtifactError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise IncompatibleArtifactError(
            f"{file}: the manifest does not make a transfer predictor ({type(exc).__name__}: "
            f"{exc})"
        ) from exc
