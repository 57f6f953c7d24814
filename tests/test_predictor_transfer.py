"""Few-shot latency transfer: known answers on synthetic tables, save/load, bad inputs, the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from predictors.apps import transfer_cli
from predictors.models import make_predictor
from predictors.predictor import InvalidConfigError
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import choose_representation, fit_transfer, representation_scores
from predictors.transfer.fit import combine, select
from predictors.transfer.persistence import MANIFEST_FILE, load_transfer, save_transfer


def _small_fbnet() -> tuple[object, list, np.ndarray]:
    """fbnet with 3 layers: all 729 architectures and their option indices."""
    space = search_spaces.get("fbnet", layers=3)
    configs = space.enumerate()
    return space, configs, space.encode_many(configs)


def _additive(X: np.ndarray, seed: int) -> np.ndarray:
    """Latency that adds up over layers: a positive cost per (layer, operation)."""
    cost = np.random.default_rng(seed).uniform(0.5, 5.0, size=(X.shape[1], 9))
    return cost[np.arange(X.shape[1])[None, :], X].sum(axis=1)


def _bank(seed: int = 0) -> tuple[DeviceBank, np.ndarray]:
    """Bank of three additive devices plus a non-additive one, over all 729 architectures."""
    space, configs, X = _small_fbnet()
    rng = np.random.default_rng(seed)
    latency = {f"dev{i}": _additive(X, seed + i) for i in range(3)}
    latency["bumpy"] = _additive(X, seed + 9) * (1 + 0.3 * rng.random(len(X)))
    return DeviceBank.from_configs(space, configs, latency), X


# -- known answers --------------------------------------------------------------------------------
def test_additive_table_is_recovered_by_layerwise_features_from_30_samples() -> None:
    space, _, X = _small_fbnet()
    y = _additive(X, seed=5)
    # 30 architectures in which every layer takes every operation (a covering design)
    rng = np.random.default_rng(0)
    design = np.stack([rng.permutation(np.resize(np.arange(9), 30)) for _ in range(3)], axis=1)
    train = np.flatnonzero((X[:, None, :] == design[None, :, :]).all(axis=2).any(axis=1))
    assert len(train) == 30
    test = np.setdiff1d(np.arange(len(X)), train)
    model = make_predictor(space, kind="ridge", encoding="onehot")
    model.set_params(regressor__alpha=1e-3).fit(X[train], y[train])
    assert spearmanr(model.predict(X[test]), y[test]).statistic > 0.99


@pytest.mark.parametrize("how", ["references", "random"])
def test_linear_function_of_a_bank_device_is_recovered_from_5_samples(how: str) -> None:
    bank, X = _bank()
    y = 2.5 * bank.latency[:, 1] + 1.0
    if how == "references":
        rows = bank.reference_rows(5, seed=0)
    else:
        rows = np.random.default_rng(1).choice(len(X), size=5, replace=False)
    configs = bank.configs()
    model = fit_transfer(bank, [(configs[i], y[i]) for i in rows], target="new")
    rest = np.setdiff1d(np.arange(len(X)), rows)
    assert spearmanr(model.predict_encoded(X[rest]), y[rest]).statistic > 0.99
    assert max(model.device_weights(), key=model.device_weights().get) == "dev1"


def test_combination_weights_are_non_negative_and_exact_on_a_noiseless_mix() -> None:
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(12, 4))
    t = 0.7 * Z[:, 0] + 0.3 * Z[:, 2] + 2.0
    fit = combine(Z, t, alpha=0.0)
    np.testing.assert_allclose(fit.w, [0.7, 0.0, 0.3, 0.0], atol=1e-9)
    assert fit.intercept == pytest.approx(2.0)
    anti = combine(Z, -Z[:, 1], alpha=0.0)  # a device faster where the bank is slower
    assert (anti.w >= 0).all()


def test_selection_keeps_the_bank_only_fit_when_features_do_not_help() -> None:
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(10, 3))
    t = Z[:, 0]
    F = rng.integers(0, 2, size=(10, 20)).astype(float)  # unrelated features
    model, held_out = select(Z, t, F)
    assert model.lam is None and model.beta is None
    assert np.abs(held_out - t).max() < 1e-8


def test_unseen_architectures_are_predicted_through_the_bank_models() -> None:
    bank, X = _bank()
    inside = np.arange(0, len(X), 2)
    half = DeviceBank(bank.space, X[inside], bank.devices, bank.latency[inside])
    y = _additive(X, seed=1) * 1.7  # dev1's costs: additive, so the bank models know it
    configs = bank.configs()
    rows = half.reference_rows(10, seed=0)
    model = fit_transfer(half, [(configs[inside[i]], y[inside[i]]) for i in rows], target="x")
    outside = np.arange(1, len(X), 2)
    assert spearmanr(model.predict_encoded(X[outside]), y[outside]).statistic > 0.99
    assert spearmanr(model.predict([configs[i] for i in outside[:50]]), y[outside[:50]])[0] > 0.99


def test_measurements_outside_the_bank_are_used() -> None:
    bank, X = _bank()
    inside = np.arange(0, len(X), 2)
    half = DeviceBank(bank.space, X[inside], bank.devices, bank.latency[inside])
    y = _additive(X, seed=2) + 3.0
    configs = bank.configs()
    measured = [(configs[i], y[i]) for i in range(1, 40, 2)]  # none of them in the bank
    model = fit_transfer(half, measured, target="x")
    assert spearmanr(model.predict_encoded(X), y).statistic > 0.99


def test_leave_one_out_quality_is_attached() -> None:
    bank, _ = _bank()
    y = bank.latency[:, 0] * 3
    rows = bank.reference_rows(8, seed=0)
    model = fit_transfer(bank, [(bank.configs()[i], y[i]) for i in rows], target="phone")
    assert model.quality is not None and model.quality.n_test == 8
    assert model.quality.spearman > 0.9
    assert model.name == "latency_ms@phone" and not model.supports_std


# -- reference architectures ----------------------------------------------------------------------
def test_references_are_deterministic_distinct_and_spread() -> None:
    bank, _ = _bank()
    a, b = bank.reference_rows(10, seed=3), bank.reference_rows(10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10
    assert not np.array_equal(a, bank.reference_rows(10, seed=4))
    fastest, slowest = bank.latency[a, 0].min(), bank.latency[a, 0].max()
    low, high = np.quantile(bank.latency[:, 0], [0.1, 0.9])
    assert fastest < low and slowest > high  # fast and slow both measured
    assert [c.key for c in bank.references(10, seed=3)] == [bank.configs()[i].key for i in a]


def test_references_refuse_a_bad_count() -> None:
    bank, _ = _bank()
    for n in (0, len(bank) + 1, 2.5, True):
        with pytest.raises(ConfigError, match=r"n=.*reference architectures"):
            bank.reference_rows(n)  # type: ignore[arg-type]


# -- representations: measured or smoothed bank latencies --------------------------------------
def _noisy_bank(seed: int = 0) -> tuple[DeviceBank, np.ndarray, np.ndarray]:
    """Five additive devices timed with 25 % independent noise, and a new device (exact)."""
    space, configs, X = _small_fbnet()
    rng = np.random.default_rng(seed)
    clean = [_additive(X, seed + i) for i in range(6)]
    noisy = {f"dev{i}": clean[i] * rng.uniform(0.75, 1.25, len(X)) for i in range(5)}
    return DeviceBank.from_configs(space, configs, noisy), X, 0.5 * clean[1] + 0.5 * clean[5]


def test_a_noisy_bank_is_represented_by_its_smooth_models() -> None:
    bank, X, y = _noisy_bank()
    choice, scores = representation_scores(bank, 10)
    assert choice == "smooth" and scores["smooth"] > scores["both"]
    rows = bank.reference_rows(10, seed=0)
    pairs = [(bank.configs()[i], y[i]) for i in rows]
    rest = np.setdiff1d(np.arange(len(X)), rows)
    rho = {}
    for representation in ("auto", "raw"):
        model = fit_transfer(bank, pairs, target="new", representation=representation)
        rho[representation] = spearmanr(model.predict_encoded(X[rest]), y[rest]).statistic
    assert model.representation == "raw"
    assert rho["auto"] > rho["raw"] + 0.02  # the bank's timing noise is not copied


def test_an_exact_bank_keeps_its_measurements_and_one_device_banks_fit() -> None:
    bank, X = _bank()
    assert choose_representation(bank, 5) == "both"
    single = bank.without("dev0", "dev2", "bumpy")
    y = 3.0 * single.latency[:, 0]
    rows = single.reference_rows(6, seed=0)
    model = fit_transfer(single, [(single.configs()[i], y[i]) for i in rows], target="x")
    assert model.representation == "both" and len(model.weights) == 2
    np.testing.assert_allclose(model.predict_encoded(X), y, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"representation='denoised' is not one of"):
        fit_transfer(single, [(single.configs()[i], y[i]) for i in rows], target="x",
                     representation="denoised")  # fmt: skip


# -- save / load ----------------------------------------------------------------------------------
def test_save_and_load_round_trip_is_json_only(tmp_path: Path) -> None:
    bank, X = _bank()
    y = bank.latency[:, 2] * 2
    rows = bank.reference_rows(10, seed=0)
    model = fit_transfer(bank, [(bank.configs()[i], y[i]) for i in rows], target="edge_tpu")
    directory = save_transfer(model, tmp_path / "p")
    assert sorted(p.name for p in directory.iterdir()) == [MANIFEST_FILE]
    json.loads((directory / MANIFEST_FILE).read_text())  # plain JSON
    loaded = load_transfer(directory, space=bank.space)
    np.testing.assert_allclose(loaded.predict_encoded(X), model.predict_encoded(X))
    assert loaded.name == model.name and loaded.device_weights() == model.device_weights()
    assert loaded.quality == model.quality
    assert loaded.representation == model.representation


def test_a_version_1_manifest_loads_with_raw_weights(tmp_path: Path) -> None:
    bank, X = _bank()
    y = bank.latency[:, 2] * 2
    rows = bank.reference_rows(10, seed=0)
    pairs = [(bank.configs()[i], y[i]) for i in rows]
    model = fit_transfer(bank, pairs, target="old", representation="raw")
    directory = save_transfer(model, tmp_path / "p")
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["format_version"] = 1
    del manifest["model"]["representation"]
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    loaded = load_transfer(directory)
    assert loaded.representation == "raw"
    np.testing.assert_allclose(loaded.predict_encoded(X), model.predict_encoded(X))
    manifest["format_version"] = 2
    manifest["model"]["representation"] = "blurred"
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleArtifactError, match=r"model\.representation='blurred'"):
        load_transfer(directory)


def test_load_refuses_another_space_a_file_and_a_damaged_manifest(tmp_path: Path) -> None:
    bank, _ = _bank()
    y = bank.latency[:, 0]
    rows = bank.reference_rows(5, seed=0)
    model = fit_transfer(bank, [(bank.configs()[i], y[i]) for i in rows], target="t")
    directory = save_transfer(model, tmp_path / "p")
    with pytest.raises(IncompatibleArtifactError, match="another search space"):
        load_transfer(directory, space=search_spaces.get("fbnet", layers=4))
    with pytest.raises(UnsafeFileError, match="not a transfer-predictor directory"):
        load_transfer(directory / MANIFEST_FILE)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["model"]["weights"] = manifest["model"]["weights"][:-1]
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleArtifactError, match=r"model\.weights"):
        load_transfer(directory)
    (directory / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(IncompatibleArtifactError, match="not complete JSON"):
        load_transfer(directory)


# -- bad input ------------------------------------------------------------------------------------
def _pairs(bank: DeviceBank, n: int) -> list[tuple[dict, float]]:
    configs = bank.configs()
    return [(configs[i].to_dict(), float(bank.latency[i, 0])) for i in range(n)]


def test_a_bank_of_another_space_is_refused_naming_the_bank() -> None:
    bank, _ = _bank()
    other = search_spaces.get("fbnet", layers=4)
    with pytest.raises(ConfigError, match=r"^bank is for search space 'fbnet' \(fingerprint"):
        fit_transfer(bank, _pairs(bank, 5), target="x", space=other)


def test_too_few_target_samples_are_refused() -> None:
    bank, _ = _bank()
    with pytest.raises(ConfigError, match=r"target_measurements has 2 sample\(s\).*at least 3"):
        fit_transfer(bank, _pairs(bank, 2), target="x")


def test_configs_outside_the_space_are_refused_naming_position_and_key() -> None:
    bank, _ = _bank()
    pairs = _pairs(bank, 5)
    pairs[3] = ({**pairs[3][0], "layer01": "k9_e9"}, 1.0)
    with pytest.raises(InvalidConfigError, match=r"target_measurements: configs\[3\]") as info:
        fit_transfer(bank, pairs, target="x")
    assert info.value.key == "layer01" and info.value.index == 3
    assert "k9_e9" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0, "fast"])
def test_bad_target_latencies_are_refused_naming_the_sample(bad: object) -> None:
    bank, _ = _bank()
    pairs = _pairs(bank, 5)
    pairs[2] = (pairs[2][0], bad)  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"target_measurements latency_ms"):
        fit_transfer(bank, pairs, target="x")


def test_nan_in_the_bank_is_refused_naming_the_device() -> None:
    space, configs, X = _small_fbnet()
    latency = {"ok": _additive(X, 0), "broken": _additive(X, 1)}
    latency["broken"][7] = math.nan
    with pytest.raises(ConfigError, match=r"bank\.latency\['broken'\]\[7\]=nan"):
        DeviceBank.from_configs(space, configs, latency)


def test_bank_shape_duplicates_and_target_name_are_checked() -> None:
    space, configs, _ = _small_fbnet()
    with pytest.raises(ConfigError, match=r"bank\.latency\['a'\] has 3 values for 729 configs"):
        DeviceBank.from_configs(space, configs, {"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match="rows 0 and 2 are the same architecture"):
        DeviceBank.from_configs(space, [configs[0], configs[1], configs[0]], {"a": [1, 2, 3]})
    bank, _ = _bank()
    with pytest.raises(ConfigError, match=r"target='dev0' is already a device of the bank"):
        fit_transfer(bank, _pairs(bank, 5), target="dev0")
    with pytest.raises(ConfigError, match=r"target_measurements\[0\] must be a"):
        fit_transfer(bank, [configs[0]] * 5, target="x")  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"alphas=\[\] must be a non-empty list"):
        fit_transfer(bank, _pairs(bank, 5), target="x", alphas=[])
    with pytest.raises(ConfigError, match="device='nope' is not one of"):
        bank.without("nope")


# -- command line ---------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_cli_references_fit_and_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bank, _ = _bank()
    configs = bank.configs()
    bank_csv = _write_csv(
        tmp_path / "bank.csv",
        ["config", *(f"lat_{d}" for d in bank.devices)],
        [[c.to_json(), *row] for c, row in zip(configs, bank.latency.tolist(), strict=True)],
    )
    common = ["--bank", str(bank_csv), "--space", "fbnet", "--options", '{"layers": 3}']
    assert transfer_cli.main(["references", *common, "-n", "6"]) == 0
    refs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(refs) == 6
    truth = {c.key: 2.0 * v for c, v in zip(configs, bank.latency[:, 0], strict=True)}
    space = bank.space
    measured = _write_csv(
        tmp_path / "m.csv",
        ["config", "latency_ms"],
        [[json.dumps(r), truth[space.validate(r).key]] for r in refs],
    )
    out = tmp_path / "phone"
    args = ["fit", *common, "--measurements", str(measured), "--target", "phone"]
    assert transfer_cli.main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "latency_ms@phone" and summary["n_train"] == 6
    query = json.dumps([configs[0].to_dict(), configs[1].to_dict()])
    assert transfer_cli.main(["predict", "--predictor", str(out), "--config", query]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    values = [line["predictions"]["latency_ms@phone"] for line in lines]
    assert values[0] == pytest.approx(truth[configs[0].key], rel=1e-6)
    assert values[1] == pytest.approx(truth[configs[1].key], rel=1e-6)


def test_cli_reports_bad_files_as_one_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _write_csv(tmp_path / "bank.csv", ["config", "lat_a"], [["{}", "x"]])
    args = ["references", "--bank", str(bad), "--space", "fbnet"]
    assert transfer_cli.main(args) == 2
    assert "line 2: lat_a='x' is not a number" in capsys.readouterr().err
    assert transfer_cli.main(["predict", "--predictor", str(tmp_path)]) == 2
    assert "exactly one of --config and --configs" in capsys.readouterr().err
    missing = _write_csv(tmp_path / "m.csv", ["config"], [["{}"]])
    with pytest.raises(ConfigError, match="column 'latency_ms' is missing"):
        transfer_cli.read_measurements_csv(missing)


# -- the README example and the shared tables --------------------------------------------------
README = Path(__file__).resolve().parents[1] / "benchmarks" / "README_transfer.md"


def readme_example() -> str:
    """The first ``python`` block under "How to add a new device" in the README."""
    text = README.read_text()
    section = text.split("## How to add a new device", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    predictor = namespace["loaded"]
    assert (tmp_path / "my_phone_predictor" / MANIFEST_FILE).is_file()
    assert predictor.quality.spearman > 0.9  # type: ignore[attr-defined]
    assert set(predictor.device_weights()) <= {"gpu", "cpu"}  # type: ignore[attr-defined]


def _shared_bank(name: str) -> DeviceBank:
    from benchmarks.transfer_data import load_bank, missing_reason

    reason = missing_reason(name)
    if reason is not None:
        pytest.skip(reason)
    return load_bank(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "device", "minimum"),
    [("nas_bench_201", "titanx_1", 0.95), ("fbnet", "silver_4210r", 0.93)],
)
def test_left_out_device_of_the_shared_tables(name: str, device: str, minimum: float) -> None:
    full = _shared_bank(name)
    j = full.devices.index(device)
    bank, y, configs = full.without(device), full.latency[:, j], full.configs()
    rows = bank.reference_rows(10, seed=0)
    model = fit_transfer(bank, [(configs[i], y[i]) for i in rows], target=device, quality=False)
    rest = np.setdiff1d(np.arange(len(y)), rows)
    assert spearmanr(model.predict_encoded(full.X[rest]), y[rest]).statistic > minimum


def test_shared_tables_load_as_banks_of_the_registered_spaces() -> None:
    for name, rows, devices in (("fbnet", 5000, 13), ("ofa_mbv3_table", 5000, 9)):
        bank = _shared_bank(name)
        assert len(bank) == rows and len(bank.devices) == devices
        assert bank.space.fingerprint() == search_spaces.get(name).fingerprint()
