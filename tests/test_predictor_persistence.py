"""Saving without pickle: round-trip, refused pickles and untrusted types, version/space checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.measure.cost import compute_cost
from predictors.dataset import fit_predictor
from predictors.models import kinds, make_predictor
from predictors.persistence import (
    MANIFEST_FILE,
    MODEL_FILE,
    PLOT_FILE,
    QUALITY_FILE,
    TRUSTED_TYPES,
    load_predictor,
    save_predictor,
)
from predictors.predictor import Predictor


def _macs_data(space, n: int = 80, seed: int = 0):  # type: ignore[no-untyped-def]
    configs = space.sample_many(n, np.random.default_rng(seed))
    y = np.array([compute_cost(space, c).macs / 1e6 for c in configs])
    return configs, y


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Predictor, list]:  # type: ignore[type-arg]
    space = search_spaces.get("tiny_cnn")
    configs, y = _macs_data(space)
    fit = fit_predictor(space, configs, y, metric="macs_m", target="cpu_fp32", kind="gbr")
    path = tmp_path_factory.mktemp("pred") / "macs_m@cpu_fp32"
    save_predictor(fit.predictor, path, held_out=(fit.y_test, fit.y_pred))
    return path, fit.predictor, configs


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_directory_layout_and_manifest(saved) -> None:  # type: ignore[no-untyped-def]
    path, predictor, _ = saved
    assert {p.name for p in path.iterdir()} == {MODEL_FILE, MANIFEST_FILE, QUALITY_FILE, PLOT_FILE}
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest["metric"] == "macs_m" and manifest["target"] == "cpu_fp32"
    assert manifest["space"]["fingerprint"] == predictor.space.fingerprint()
    assert manifest["space"]["name"] == "tiny_cnn"
    assert set(manifest["versions"]) >= {"scikit-learn", "skops", "numpy", "python"}
    assert manifest["features"]["encoding"] == "ordinal"
    assert manifest["quality"]["n_test"] == 20 and manifest["quality"]["n_train"] == 60
    assert manifest["trusted_types"] == list(TRUSTED_TYPES)


@pytest.mark.parametrize("kind", kinds())
def test_round_trip_gives_identical_predictions(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    space = search_spaces.get("tiny_cnn")
    configs, y = _macs_data(space, n=60)
    X = space.encode_many(configs)
    predictor = Predictor(space, make_predictor(space, kind=kind).fit(X, y), metric="m", kind=kind)
    save_predictor(predictor, tmp_path / "p")
    for space_arg in (None, space):
        loaded = load_predictor(tmp_path / "p", space=space_arg)
        probe = space.sample_many(30, np.random.default_rng(9))
        np.testing.assert_array_equal(loaded.predict(probe), predictor.predict(probe))
        assert loaded.space_fingerprint == space.fingerprint()
        if predictor.supports_std:
            np.testing.assert_array_equal(
                loaded.predict(probe, return_std=True)[1],
                predictor.predict(probe, return_std=True)[1],
            )


def test_cell_space_pipeline_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(space.sample_many(60, np.random.default_rng(0)))
    y = (X == 3).sum(axis=1) + 0.1 * X[:, 0]
    predictor = Predictor(space, make_predictor(space, kind="gbr").fit(X, y), metric="m")
    save_predictor(predictor, tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / MANIFEST_FILE).read_text())
    assert (
        manifest["features"]["cell_pruning"] is True and manifest["features"]["n_features"] == 69
    )
    loaded = load_predictor(tmp_path / "p", space=space)
    np.testing.assert_array_equal(loaded.predict_encoded(X), predictor.predict_encoded(X))


def test_cell_path_features_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(space.sample_many(60, np.random.default_rng(1)))
    y = (X == 3).sum(axis=1) + 0.1 * X[:, 0]
    pipeline = make_predictor(space, kind="ensemble", cell_paths=True).fit(X, y)
    predictor = Predictor(space, pipeline, metric="m")
    save_predictor(predictor, tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / MANIFEST_FILE).read_text())
    assert manifest["features"]["cell_paths"] is True
    assert manifest["features"]["n_features"] == 85
    loaded = load_predictor(tmp_path / "p", space=space)
    np.testing.assert_array_equal(loaded.predict_encoded(X), predictor.predict_encoded(X))


def test_loaded_quality_report_matches(saved) -> None:  # type: ignore[no-untyped-def]
    path, predictor, _ = saved
    assert load_predictor(path).quality == predictor.quality


def test_crafted_pickle_as_model_is_refused_and_never_run(saved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = saved
    victim = _copy(path, tmp_path / "victim")
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # classic protocol-0 exploit
    (victim / MODEL_FILE).write_bytes(payload)
    with pytest.raises(UnsafeFileError, match="is a pickle"):
        load_predictor(victim)
    (victim / MODEL_FILE).write_bytes(b"\x80\x04K\x01.")  # protocol-4 pickle of the int 1
    with pytest.raises(UnsafeFileError, match="is a pickle"):
        load_predictor(victim)
    assert not marker.exists()


def test_pickle_file_in_the_predictor_directory_is_refused(saved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = saved
    victim = _copy(path, tmp_path / "victim")
    (victim / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeFileError, match=r"model\.pkl looks like a pickle"):
        load_predictor(victim)


def test_path_to_a_pickle_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "predictor.pkl"
    file.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeFileError, match="is a pickle"):
        load_predictor(file)


def test_untrusted_type_in_a_valid_archive_is_refused(saved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = saved
    victim = _copy(path, tmp_path / "victim")
    evil = Pipeline([("run", FunctionTransformer(os.system))])
    sio.dump(evil, victim / MODEL_FILE)
    manifest = json.loads((victim / MANIFEST_FILE).read_text())
    import hashlib

    manifest["model_sha256"] = hashlib.sha256((victim / MODEL_FILE).read_bytes()).hexdigest()
    (victim / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(UnsafeFileError, match=r"untrusted types.*system"):
        load_predictor(victim)


def test_replaced_model_fails_the_hash_check(saved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, predictor, configs = saved
    victim = _copy(path, tmp_path / "victim")
    space = predictor.space
    other = make_predictor(space, kind="ridge").fit(
        space.encode_many(configs), np.ones(len(configs))
    )
    sio.dump(other, victim / MODEL_FILE)
    with pytest.raises(UnsafeFileError, match="sha256"):
        load_predictor(victim)


def test_version_mismatch_names_the_library(saved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = saved
    victim = _copy(path, tmp_path / "victim")
    manifest = json.loads((victim / MANIFEST_FILE).read_text())
    manifest["versions"]["scikit-learn"] = "0.24.2"
    (victim / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(
        IncompatibleArtifactError, match=r"scikit-learn saved with 0\.24\.2, running"
    ):
        load_predictor(victim)


def test_space_mismatch_names_the_dimension(saved) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = saved
    other = search_spaces.get("tiny_cnn", bits=(8, 32))
    with pytest.raises(
        IncompatibleArtifactError,
        match=r"s0\.b0\.bits\.options: saved \[4, 8, 32\], given \[8, 32\]",
    ):
        load_predictor(path, space=other)
    with pytest.raises(
        IncompatibleArtifactError, match="name: saved 'tiny_cnn', given 'nas_bench_201'"
    ):
        load_predictor(path, space=search_spaces.get("nas_bench_201"))


def test_missing_manifest_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"manifest\.json is missing"):
        load_predictor(tmp_path / "empty")


def test_loaded_predictor_validates_configs_against_the_saved_space(saved) -> None:  # type: ignore[no-untyped-def]
    path, _, configs = saved
    loaded = load_predictor(path)
    bad = {**configs[0].to_dict(), "s0.b0.kernel": 4}
    with pytest.raises(ConfigError, match=r"s0\.b0\.kernel=4 is not one of \[3, 5\]"):
        loaded.predict([bad])
