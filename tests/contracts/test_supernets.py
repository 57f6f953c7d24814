"""Conformance suite for every supernet family and every space that builds one.

Parametrised over the family registry (:data:`nas.supernets.FAMILIES`) and the spaces of
:data:`search_spaces.SUPERNET_SPACES`, so a new family or space is checked without new tests:
exact export (fp32, 8 and 4 bits), ONNX parity, analytic cost equal to a count on the exported
module, checkpoint round trip, every dimension reachable, bad configs refused naming the key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import nas.supernets
import search_spaces
from nas.data.resolution import images_for
from nas.elastic import ElasticActQuant, ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from nas.elastic.quantization import FakeQuantize
from nas.elastic.transformer import ElasticGroupedLinear, ElasticLayerNorm
from nas.errors import ConfigError
from nas.measure.cost import compute_cost, count_module_cost
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from tests.conftest import SUPERNET_CASES, build_space

N_RANDOM = 20
# Where the classes of an exported (static) module may come from.
STATIC_MODULE_HOMES = (
    "torch.nn",
    "nas.supernets.mbconv.static",
    "nas.supernets.vit.static",
    "nas.elastic.quantization",
)
# Export repeats the supernet's arithmetic op for op, so equality is exact in torch; ONNX Runtime
# uses its own kernels, hence a float tolerance there.
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def _perturbed_supernet(space: SearchSpace) -> Supernet:
    """A supernet whose BN statistics, quant scales and kernel transforms are not at their init."""
    torch.manual_seed(0)
    net = Supernet(space)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "transforms" in name or "scales" in name or "bn" in name or "norm" in name:
                p.mul_(1 + 0.1 * torch.randn_like(p))
            if p.dim() == 1 and not bool(p.any()):  # zero-initialised biases
                p.add_(0.05 * torch.randn_like(p))
    net.train()
    x = torch.randn(8, *net.input_shape()[1:])
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for cfg in [space.largest(), space.smallest(), *space.sample_many(4, rng)]:
            net(x, cfg)
    return net.eval()


def _configs(space: SearchSpace) -> list[SubnetConfig]:
    rng = np.random.default_rng(42)
    return [space.smallest(), space.largest(), *space.sample_many(N_RANDOM, rng)]


@pytest.fixture(scope="module", params=SUPERNET_CASES)
def supernet(request: pytest.FixtureRequest) -> Supernet:
    return _perturbed_supernet(build_space(request.param))


def test_export_equals_supernet_exactly(supernet: Supernet) -> None:
    x = torch.randn(3, *supernet.input_shape()[1:])
    for cfg in _configs(supernet.space):
        with torch.no_grad():
            expected = supernet(x, cfg)
            actual = supernet.export(cfg).eval()(x)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_exported_module_is_static_and_has_no_unused_weights(supernet: Supernet) -> None:
    elastic = (
        ElasticConv2d,
        ElasticBatchNorm2d,
        ElasticLinear,
        ElasticActQuant,
        ElasticGroupedLinear,
        ElasticLayerNorm,
        Supernet,
    )
    for cfg in _configs(supernet.space):
        module = supernet.export(cfg)
        assert not any(isinstance(m, elastic) for m in module.modules())
        assert all(type(m).__module__.startswith(STATIC_MODULE_HOMES) for m in module.modules())
        analytic = compute_cost(supernet.space, cfg)
        counted = count_module_cost(module, supernet.input_shape(1, cfg))
        assert counted == analytic
        assert sum(p.numel() for p in module.parameters()) == analytic.params


def test_onnx_runtime_matches_export(supernet: Supernet, tmp_path: Path) -> None:
    for i, cfg in enumerate(_configs(supernet.space)):
        x = torch.randn(2, *supernet.input_shape(1, cfg)[1:])  # the config's resolution
        path = supernet.export_onnx(cfg, tmp_path / f"{i}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = supernet(x, cfg).numpy()
        np.testing.assert_allclose(onnx_out, expected, **ONNX_TOLERANCE)


def test_forward_depends_on_every_kind_of_choice(supernet: Supernet) -> None:
    space = supernet.space
    x = torch.randn(2, *supernet.input_shape()[1:])
    base = space.largest()
    with torch.no_grad():
        reference = supernet(images_for(space, base, x), base)
    kinds = {n.rsplit(".", 1)[-1] for n in space.names if len(space.dim(n).options) > 1}
    assert kinds
    for kind in sorted(kinds):
        name = next(
            n
            for n in space.names
            if n.rsplit(".", 1)[-1] == kind
            and space.is_active(base, n)
            and len(space.dim(n).options) > 1
        )
        changed = base.replace(**{name: space.dim(name).options[0]})
        with torch.no_grad():
            out = supernet(images_for(space, changed, x), changed)
            assert out.shape != reference.shape or not torch.equal(out, reference), name


def _covering_configs(space: SearchSpace) -> list[SubnetConfig]:
    """Few configs in which every option of every dimension is active at least once.

    Config ``k`` sets each dimension to its ``k``-th option (the last, if it has fewer) with
    depths at their largest, so every block is active; a second set varies the depths alone.
    """
    depth_dims = {d.active_if[0] for d in space.dims if d.active_if is not None}
    largest = space.largest().to_dict()
    configs = []
    for k in range(max(len(d.options) for d in space.dims)):
        configs.append(
            {
                d.name: d.options[-1 if d.name in depth_dims else min(k, len(d.options) - 1)]
                for d in space.dims
            }
        )
        configs.append(
            {
                **largest,
                **{
                    n: space.dim(n).options[min(k, len(space.dim(n).options) - 1)]
                    for n in depth_dims
                },
            }
        )
    return [space.validate(c) for c in configs]


def test_every_option_of_every_dimension_runs_and_exports(supernet: Supernet) -> None:
    """Each option is reachable: configs holding it validate, run and export exactly."""
    space = supernet.space
    configs = _covering_configs(space)
    for dim in space.dims:
        reached = {c[dim.name] for c in configs if space.is_active(c, dim.name)}
        assert reached == set(dim.options), dim.name
    x = torch.randn(2, *supernet.input_shape()[1:])
    for cfg in configs:
        with torch.no_grad():
            torch.testing.assert_close(
                supernet.export(cfg).eval()(x), supernet(x, cfg), rtol=0, atol=0
            )


def test_training_mode_backpropagates_into_shared_weights(supernet: Supernet) -> None:
    space = supernet.space
    supernet.train()
    try:
        supernet.zero_grad()
        cfg = space.smallest()
        x = torch.randn(4, *supernet.input_shape()[1:])
        supernet(x, cfg).square().mean().backward()
        grads = {n: p.grad for n, p in supernet.named_parameters()}
        first = next(n for n, p in supernet.named_parameters() if p.dim() > 1)
        assert grads[first] is not None
        assert grads[first].abs().sum() > 0
        quant_grads = [g for n, g in grads.items() if "scales" in n and g is not None]
        if any(int(b) < 32 for b in (cfg[n] for n in space.names if n.endswith("bits"))):
            assert quant_grads and any(g.abs().sum() > 0 for g in quant_grads)
    finally:
        supernet.eval()
        supernet.zero_grad()


def test_forward_rejects_an_invalid_config(supernet: Supernet) -> None:
    x = torch.randn(1, *supernet.input_shape()[1:])
    for dim in supernet.space.dims[:3]:
        bad = supernet.space.smallest().to_dict()
        bad[dim.name] = 999
        with pytest.raises(ConfigError, match=rf"{dim.name}=999 is not one of"):
            supernet(x, SubnetConfig.from_dict(bad))
    unknown = {**supernet.space.smallest().to_dict(), "no_such_dimension": 1}
    with pytest.raises(ConfigError, match="no_such_dimension"):
        supernet(x, SubnetConfig.from_dict(unknown))
    first = supernet.space.dims[0].name
    too_deep = {**supernet.space.largest().to_dict(), first: 999}
    with pytest.raises(ConfigError, match=rf"{first}=999 is not one of"):
        supernet.export(SubnetConfig.from_dict(too_deep))


@pytest.mark.parametrize("bits", [8, 4])
def test_export_equals_supernet_exactly_at_low_bits(supernet: Supernet, bits: int) -> None:
    space = supernet.space
    if not any(bits in space.dim(n).options for n in space.names if n.endswith(".bits")):
        pytest.skip(f"{space.name} has no {bits}-bit choice")
    x = torch.randn(3, *supernet.input_shape()[1:])
    for cfg in _configs(space):
        cfg = space.validate(_with_bits(space, cfg, bits))
        with torch.no_grad():
            torch.testing.assert_close(
                supernet.export(cfg).eval()(x), supernet(x, cfg), rtol=0, atol=0
            )


def test_checkpoint_round_trip_keeps_every_output(supernet: Supernet, tmp_path: Path) -> None:
    from nas.training.checkpoint import load_supernet, save_checkpoint

    save_checkpoint(
        tmp_path / "ckpt",
        model=supernet,
        space=supernet.space,
        epoch=1,
        global_step=1,
        train_config={},
    )
    restored, _ = load_supernet(tmp_path / "ckpt")
    assert type(restored) is type(supernet)
    restored.eval()
    x = torch.randn(2, *supernet.input_shape()[1:])
    for cfg in _configs(supernet.space)[:6]:
        with torch.no_grad():
            torch.testing.assert_close(restored(x, cfg), supernet(x, cfg), rtol=0, atol=0)


def test_family_registry_covers_every_supernet_space() -> None:
    """Each registered family has spaces (its example among them); each supernet space a family."""
    families = {
        name: nas.supernets.family_of(build_space(name)) for name in search_spaces.SUPERNET_SPACES
    }
    assert set(f.name for f in families.values()) == set(nas.supernets.FAMILIES)
    for family in nas.supernets.FAMILIES.values():
        assert families[family.example_space] is family
        assert issubclass(family.supernet_class, Supernet)
        assert family.reorders == hasattr(family.supernet_class, "reorder_by_importance")
    for name in set(search_spaces.names()) - set(search_spaces.SUPERNET_SPACES):
        with pytest.raises(ConfigError, match="no supernet architecture"):
            nas.supernets.family_of(search_spaces.get(name))


def _with_bits(space: SearchSpace, cfg: SubnetConfig, bits: int) -> SubnetConfig:
    return cfg.replace(**{n: bits for n in space.names if n.endswith(".bits")})


@pytest.mark.parametrize("family", sorted(nas.supernets.FAMILIES))
def test_lower_bits_change_outputs_and_eight_bits_stay_close(family: str) -> None:
    space = build_space(nas.supernets.FAMILIES[family].example_space)
    net = _perturbed_supernet(space)
    x = torch.randn(64, *net.input_shape()[1:])
    cfg = space.largest()
    with torch.no_grad():
        full = net(x, _with_bits(space, cfg, 32))
        eight = net(x, _with_bits(space, cfg, 8))
        four = net(x, _with_bits(space, cfg, 4))
    scale = full.abs().mean()
    err8 = (eight - full).abs().mean() / scale
    err4 = (four - full).abs().mean() / scale
    assert not torch.equal(eight, full)
    assert err8 < 0.1, f"8-bit relative error {err8:.4f}"
    assert err4 > 2 * err8, f"4-bit error {err4:.4f} should exceed 8-bit error {err8:.4f}"
    exported = net.export(_with_bits(space, cfg, 8)).eval()
    assert sum(isinstance(m, FakeQuantize) for m in exported.modules()) > 0
    with torch.no_grad():
        torch.testing.assert_close(exported(x), eight, rtol=0, atol=0)
    # quantized weights live on the 8-bit grid: at most 255 distinct levels per output channel
    conv = next(m for m in exported.blocks.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    levels = max(len(torch.unique(conv.weight[o])) for o in range(conv.weight.shape[0]))
    assert levels <= 255
