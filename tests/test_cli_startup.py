"""Light start-up of `nas predict` / `nas best`: skops trusts only the listed estimators, `best`
reads the archive without rebuilding models, and neither command imports what it does not use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.svm import SVR

import search_spaces
from nas.errors import UnsafeFileError
from nas.measure.cost import compute_cost
from predictors.bundle import Predictors, build_archive, load_archive
from predictors.dataset import fit_predictor
from predictors.persistence import (
    ESTIMATORS,
    MANIFEST_FILE,
    MODEL_FILE,
    TRUSTED_TYPES,
    load_predictor,
    save_predictor,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    space = search_spaces.get("tiny_cnn")
    configs = space.sample_many(60, np.random.default_rng(0))
    macs = np.array([compute_cost(space, c).macs for c in configs], dtype=float)
    fits = [
        fit_predictor(space, configs, 80 + np.log(macs), metric="top1", kind="ridge"),
        fit_predictor(space, configs, macs / 1e5, metric="latency_ms", target="cpu", kind="gbr"),
    ]
    bundle = Predictors([f.predictor for f in fits])
    archive = build_archive(bundle, space.sample_many(80, np.random.default_rng(1)))
    path = tmp_path_factory.mktemp("bundle") / "bundle"
    Predictors([bundle[n] for n in bundle.names], archive=archive).save(path)
    return path


def _reseal(predictor_dir: Path) -> None:
    manifest = json.loads((predictor_dir / MANIFEST_FILE).read_text())
    data = (predictor_dir / MODEL_FILE).read_bytes()
    manifest["model_sha256"] = hashlib.sha256(data).hexdigest()
    (predictor_dir / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_an_estimator_outside_the_allow_list_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    victim = shutil.copytree(bundle_dir / "top1", tmp_path / "top1")
    # SVR is a scikit-learn estimator skops' own defaults would trust; ours do not.
    sio.dump(Pipeline([("svr", SVR())]), victim / MODEL_FILE)
    _reseal(victim)
    with pytest.raises(UnsafeFileError, match=r"untrusted types.*sklearn\.svm\._classes\.SVR"):
        load_predictor(victim)


def test_save_refuses_an_estimator_outside_the_allow_list(
    bundle_dir: Path, tmp_path: Path
) -> None:
    predictor = Predictors.load(bundle_dir)["top1"]
    foreign = Pipeline([("features", predictor.pipeline.steps[0][1]), ("svr", SVR())])
    X = predictor.space.encode_many(predictor.space.sample_many(20, np.random.default_rng(0)))
    foreign.fit(X, X.sum(axis=1).astype(float))
    from dataclasses import replace

    with pytest.raises(UnsafeFileError, match="SVR"):
        save_predictor(replace(predictor, pipeline=foreign), tmp_path / "svr")
    assert not (tmp_path / "svr" / MODEL_FILE).exists()


def test_the_allow_list_trusts_no_more_than_skops_would() -> None:
    from sklearn.utils import all_estimators

    every = {f"{cls.__module__}.{cls.__name__}" for _, cls in all_estimators()}
    import importlib

    for path in ESTIMATORS:
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert f"{cls.__module__}.{cls.__name__}" in every, path
    assert not set(TRUSTED_TYPES) & every  # TRUSTED_TYPES lists only what skops would not


def test_best_from_the_archive_alone_answers_as_the_loaded_bundle(bundle_dir: Path) -> None:
    light, full = load_archive(bundle_dir), Predictors.load(bundle_dir)
    assert light.archive == full.archive and light.names == full.names
    for bound in (0.5, 1.0, 2.0, 1e9):
        assert light.best(target="cpu", max_latency_ms=bound) == full.best(
            target="cpu", max_latency_ms=bound
        )


def test_best_from_the_archive_still_checks_each_model(bundle_dir: Path, tmp_path: Path) -> None:
    victim = shutil.copytree(bundle_dir, tmp_path / "bundle")
    model = victim / "top1" / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # the same zip, one byte of its comment changed
    model.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="sha256"):
        load_archive(victim)


PROBE = """
import sys
from predictors.apps.commands import {call}
{call}({args})
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'torch', 'pymoo', 'sklearn', 'skops'}})
print(' '.join(heavy))
"""


@pytest.mark.parametrize(
    ("call", "args", "imported"),
    [
        ("best_command", "{b!r}, 'cpu', 1e9", ""),
        ("predict_command", "{b!r}, [{{}}], base='smallest'", "sklearn skops"),
    ],
)
def test_predict_and_best_import_only_what_they_use(
    bundle_dir: Path, call: str, args: str, imported: str
) -> None:
    code = PROBE.format(call=call, args=args.format(b=str(bundle_dir)))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == imported  # never torch, nor pymoo
