"""Numeric (bounded integer or real) dimensions: validation, encoding, features, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError
from nas.space import Choice, Numeric, SearchSpace
from predictors.features import feature_schema, make_features
from predictors.models import kinds, make_predictor
from predictors.persistence import load_predictor, save_predictor, space_from_schema, space_schema
from predictors.predictor import InvalidConfigError, Predictor


def _space(low: float = 0.5) -> SearchSpace:
    return SearchSpace(
        "mixed",
        (
            Choice("op", ("conv", "pool", "skip"), ordered=False),
            Choice("depth", (1, 2)),
            Numeric("width_mult", low, 2.0),
            Numeric("channels", 8, 64, integer=True, active_if=("depth", 1)),
        ),
    )


def _latency(config: dict) -> float:
    """Known answer: additive in the operation, linear in the two numbers."""
    op = {"conv": 3.0, "pool": 1.0, "skip": 0.2}[config["op"]]
    second = 0.05 * config["channels"] if config["depth"] == 2 else 0.0
    return op + 4.0 * config["width_mult"] + second


def test_values_are_validated_naming_the_dimension_and_bounds() -> None:
    space = _space()
    base = {"op": "conv", "depth": 2, "width_mult": 1.0, "channels": 16}
    assert space.validate(base)["width_mult"] == 1.0
    cases = [
        ({"width_mult": 2.5}, r"width_mult=2\.5 is outside the allowed values: numbers in "),
        ({"width_mult": float("nan")}, "width_mult=nan is outside"),
        ({"width_mult": "wide"}, "width_mult='wide' is not a number"),
        ({"channels": 4}, r"channels=4 is outside the allowed values: integers in \[8, 64\]"),
        ({"channels": 16.5}, "channels=16.5 is not a whole number"),
        ({"channels": True}, "channels=True is not a number"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            space.validate({**base, **change})
    with pytest.raises(ConfigError, match=r"missing key 'width_mult'.*numbers in \[0\.5, 2\.0\]"):
        space.validate({k: v for k, v in base.items() if k != "width_mult"})
    assert space.validate({**base, "channels": 16.0})["channels"] == 16  # whole float accepted


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"low=2\.0 must be below high=1\.0"):
        Numeric("w", 2.0, 1.0)
    with pytest.raises(ConfigError, match="high=inf must be finite"):
        Numeric("w", 0.0, float("inf"))
    with pytest.raises(ConfigError, match=r"low=0\.5 must be an integer"):
        Numeric("c", 0.5, 8, integer=True)
    with pytest.raises(ConfigError, match="numeric dimension; depth dimensions must be Choice"):
        SearchSpace(
            "s", (Numeric("d", 1, 3, integer=True), Choice("k", (3, 5), active_if=("d", 1)))
        )


def test_encode_decode_sample_and_canonical() -> None:
    space = _space()
    configs = space.sample_many(200, np.random.default_rng(0))
    X = space.encode_many(configs)
    assert X.dtype == np.float64 and X.shape == (200, 4)
    assert [space.decode(x) for x in X] == configs
    widths = X[:, 2]
    assert widths.min() >= 0.5 and widths.max() <= 2.0 and len(np.unique(widths)) == 200
    assert set(np.unique(X[:, 3])) <= set(range(8, 65))
    assert all(isinstance(c["channels"], int) for c in configs)
    cfg = {"op": "pool", "depth": 1, "width_mult": 1.5, "channels": 40}
    assert space.canonical(cfg)["channels"] == 8  # inactive: reset to low
    np.testing.assert_array_equal(
        space.canonical_indices(space.encode(cfg)), space.encode(space.canonical(cfg))[None, :]
    )
    assert space.smallest()["width_mult"] == 0.5 and space.largest()["channels"] == 64
    with pytest.raises(ConfigError, match="numeric dimension 'width_mult'"):
        _ = space.n_options
    with pytest.raises(ConfigError, match="real-valued dimension 'width_mult'"):
        space.size()


def test_choice_only_spaces_keep_integer_encodings() -> None:
    space = search_spaces.get("nas_bench_201")
    assert not space.has_numeric
    assert space.encode(space.largest()).dtype == np.int64
    assert space.encode_many([]).dtype == np.int64


def test_fingerprint_and_schema_follow_the_bounds() -> None:
    assert _space(0.5).fingerprint() != _space(0.25).fingerprint()
    rebuilt = space_from_schema(space_schema(_space()))
    assert rebuilt.fingerprint() == _space().fingerprint()
    assert isinstance(rebuilt.dims[3], Numeric) and rebuilt.dims[3].integer


def test_unseen_in_range_values_predict_by_interpolation() -> None:
    space = _space()
    grid = [0.5, 1.0, 1.5, 2.0]  # measured widths only
    configs = [
        {"op": op, "depth": d, "width_mult": w, "channels": c}
        for op in ("conv", "pool", "skip")
        for d in (1, 2)
        for w in grid
        for c in (8, 32, 64)
    ]
    configs = list({space.canonical(c).key: space.canonical(c) for c in configs}.values())
    X = space.encode_many(configs)
    y = np.array([_latency(c.to_dict()) for c in configs])
    predictor = Predictor(space, make_predictor(space, kind="ridge").fit(X, y), metric="lat")
    predictor.pipeline.set_params(regressor__alpha=1e-6).fit(X, y)
    unseen = {"op": "conv", "depth": 2, "width_mult": 1.25, "channels": 20}
    assert predictor.predict([unseen])[0] == pytest.approx(_latency(unseen), rel=0.01)
    with pytest.raises(InvalidConfigError, match=r"configs\[0\]: width_mult=3\.0 is outside"):
        predictor.predict([{**unseen, "width_mult": 3.0}])


@pytest.mark.parametrize("kind", kinds())
def test_every_kind_fits_numeric_dimensions(kind: str) -> None:
    space = _space()
    configs = [space.canonical(c) for c in space.sample_many(160, np.random.default_rng(1))]
    X = space.encode_many(configs)
    y = np.array([_latency(c.to_dict()) for c in configs])
    model = make_predictor(space, kind=kind).fit(X[:120], y[:120])
    assert np.corrcoef(model.predict(X[120:]), y[120:])[0, 1] > 0.9


def test_features_scale_numbers_to_unit_interval_and_zero_when_inactive() -> None:
    space = _space()
    features = make_features(space).fit(space.encode_many([space.smallest()]))
    low = features.transform(space.encode_many([space.smallest()]))
    high = features.transform(space.encode_many([space.largest()]))
    assert low.shape[1] == feature_schema(space)["n_features"]
    assert feature_schema(space)["numeric"] == ["width_mult", "channels"]
    assert low[0, :2].tolist() == [0.0, 0.0]  # width at low; channels inactive at depth 1
    assert high[0, :2].tolist() == [1.0, 1.0]


def test_predictor_with_numeric_dimensions_saves_and_loads(tmp_path: Path) -> None:
    space = _space()
    configs = [space.canonical(c) for c in space.sample_many(60, np.random.default_rng(2))]
    X = space.encode_many(configs)
    y = np.array([_latency(c.to_dict()) for c in configs])
    predictor = Predictor(space, make_predictor(space, kind="gbr").fit(X, y), metric="lat")
    save_predictor(predictor, tmp_path / "p")
    loaded = load_predictor(tmp_path / "p")
    np.testing.assert_allclose(loaded.predict(configs), predictor.predict(configs))
    with pytest.raises(IncompatibleArtifactError, match=r"width_mult\.numeric: saved"):
        load_predictor(tmp_path / "p", space=_space(0.25))


def test_space_summary_shows_numeric_dimensions_as_ranges() -> None:
    from nas.space import Choice, Numeric, SearchSpace
    from nas.space_summary import format_summary, space_summary

    reals = SearchSpace("t", (Choice("w", (8, 16)), Numeric("m", 0.5, 1.5)))
    summary = space_summary(reals)
    assert summary["size"] is None  # infinitely many configs
    assert summary["dimensions"][1] == {
        "name": "m", "kind": "reals", "values": [0.5, 1.5], "ordered": True, "active_if": None,
    }  # fmt: skip
    assert "infinitely many configs" in format_summary(summary)
    ints = SearchSpace("t", (Choice("w", (8, 16)), Numeric("c", 8, 64, integer=True)))
    text = format_summary(space_summary(ints))
    assert "114 configs" in text and "integers in [8, 64]" in text
