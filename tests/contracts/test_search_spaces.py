"""Conformance suite run for every registered search space."""

from __future__ import annotations

import json

import numpy as np
import pytest

import search_spaces
from nas.errors import ConfigError
from nas.subnet import SubnetConfig
from tests.conftest import SUPERNET_CASES, build_space

SPACES = search_spaces.names()


@pytest.mark.parametrize("name", SPACES)
def test_encode_decode_round_trip(name: str) -> None:
    space = build_space(name)
    rng = np.random.default_rng(1)
    for cfg in [*space.sample_many(50, rng), space.smallest(), space.largest()]:
        x = space.encode(cfg)
        assert x.dtype == np.int64 and x.shape == (len(space.dims),)
        assert space.decode(x) == cfg
        assert SubnetConfig.from_dict(json.loads(cfg.to_json())) == cfg
        assert space.validate(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", SPACES)
def test_same_seed_same_samples_and_different_seed_differs(name: str) -> None:
    space = build_space(name)
    a = space.sample_many(20, np.random.default_rng(7))
    b = space.sample_many(20, np.random.default_rng(7))
    c = space.sample_many(20, np.random.default_rng(8))
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", SPACES)
def test_every_dimension_and_option_is_exercised(name: str) -> None:
    space = build_space(name)
    encoded = space.encode_many(space.sample_many(300, np.random.default_rng(3)))
    for column, dim in enumerate(space.dims):
        seen = set(encoded[:, column].tolist())
        assert seen == set(range(len(dim.options))), dim.name


@pytest.mark.parametrize("name", SPACES)
def test_smallest_largest_and_size(name: str) -> None:
    space = build_space(name)
    assert space.contains(space.smallest()) and space.contains(space.largest())
    assert np.all(space.encode(space.smallest()) == 0)
    assert np.all(space.encode(space.largest()) == space.n_options - 1)
    assert space.size() == int(np.prod([len(d.options) for d in space.dims], dtype=object))


@pytest.mark.parametrize("name", SPACES)
def test_config_key_is_stable_and_distinguishes(name: str) -> None:
    space = build_space(name)
    cfgs = space.sample_many(30, np.random.default_rng(5))
    for cfg in cfgs:
        assert cfg.key == SubnetConfig.from_dict(json.loads(cfg.to_json())).key
        reordered = SubnetConfig.from_dict(dict(reversed(list(cfg.to_dict().items()))))
        assert reordered.key == cfg.key
    assert len({c.key for c in cfgs}) == len(set(cfgs))


def _bad_value(options: tuple[object, ...]) -> object:
    """A value outside the declared options, of the same kind (sklearn's invalid-param idea)."""
    if all(isinstance(o, str) for o in options):
        return "not_" + "_".join(str(o) for o in options)
    return max(float(o) for o in options) + 1  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SPACES)
def test_bad_value_for_every_dimension_names_key_and_allowed(name: str) -> None:
    space = build_space(name)
    base = space.smallest().to_dict()
    for dim in space.dims:
        bad = _bad_value(dim.options)
        with pytest.raises(ConfigError) as info:
            space.validate({**base, dim.name: bad})
        message = str(info.value)
        assert dim.name in message
        assert repr(bad) in message
        assert str(list(dim.options)) in message


@pytest.mark.parametrize("name", SPACES)
def test_unknown_and_missing_keys_are_named(name: str) -> None:
    space = build_space(name)
    base = space.smallest().to_dict()
    with pytest.raises(ConfigError, match="'bogus'") as info:
        space.validate({**base, "bogus": 1})
    assert space.dims[0].name in str(info.value)  # the allowed keys are listed
    for dim in space.dims:
        partial = {k: v for k, v in base.items() if k != dim.name}
        with pytest.raises(ConfigError) as info:
            space.validate(partial)
        assert repr(dim.name) in str(info.value)
        assert str(list(dim.options)) in str(info.value)


@pytest.mark.parametrize("name", SPACES)
def test_decode_rejects_out_of_range_indices(name: str) -> None:
    space = build_space(name)
    x = space.encode(space.smallest())
    x[-1] = len(space.dims[-1].options)
    with pytest.raises(ConfigError, match=space.dims[-1].name):
        space.decode(x)
    with pytest.raises(ConfigError, match="shape"):
        space.decode(x[:-1])


def test_registry_rejects_unknown_space_naming_the_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        search_spaces.get("resnet_huge")
    assert "resnet_huge" in str(info.value)
    for name in SPACES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", SUPERNET_CASES)
def test_supernet_spaces_expose_depth_width_and_bits_of_known_kinds(name: str) -> None:
    """Every supernet space is elastic in depth, width and bits, and progressive shrinking
    knows the kind of each of its dimensions (the input resolution is elastic throughout)."""
    from nas.training.sampling import dimension_kind

    space = build_space(name)
    assert {"depth", "width", "bits"} <= {dimension_kind(n) for n in space.names}
    unknown = [n for n in space.names if dimension_kind(n) is None and n != "resolution"]
    assert not unknown


def test_canonical_drops_skipped_blocks() -> None:
    space = build_space("tiny_cnn")
    cfg = space.smallest().replace(**{"s1.b2.kernel": 5})  # s1.depth is 1: block 2 is skipped
    assert cfg != space.smallest()
    assert space.canonical(cfg) == space.smallest()
    assert not space.is_active(cfg, "s1.b2.kernel")
    assert space.is_active(cfg, "s1.b0.kernel")


@pytest.mark.parametrize("name", SPACES)
def test_canonical_indices_agree_with_canonical(name: str) -> None:
    space = build_space(name)
    configs = space.sample_many(200, np.random.default_rng(5))
    X = space.encode_many(configs)
    expected = space.encode_many([space.canonical(c) for c in configs])
    np.testing.assert_array_equal(space.canonical_indices(X), expected)
    np.testing.assert_array_equal(X, space.encode_many(configs))  # input left alone
