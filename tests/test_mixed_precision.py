"""The ``mixed`` precision: each linear layer of a ViT subnet on the kernel of its block's bits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import search_spaces
from nas.deploy.mixed_precision import (
    FULL_BITS,
    kernel_for,
    layer_bits,
    layer_nodes,
    scope_module,
)
from nas.deploy.ort_kernels import optimized_op_types
from nas.deploy.weight_only import w4_weights
from nas.errors import ConfigError
from nas.measure.deployed_accuracy import deployed_top1
from nas.measure.latency import LatencyProtocol, _ort_session, deployable, measure_latency
from nas.measure.onnx_deploy import onnx_for_target
from nas.measure.targets import HardwareTarget, default_registry
from nas.supernets.base import Supernet

BLOCK_BITS = (4, 8, 32)
LINEARS = ("attention.qkv.1", "attention.proj.1", "mlp.1", "mlp.4")
# the exporter's scope path of each linear layer within a block
SCOPES = {
    "attention.qkv.1": "attention/qkv/qkv.1",
    "attention.proj.1": "attention/proj/proj.1",
    "mlp.1": "mlp/mlp.1",
    "mlp.4": "mlp/mlp.4",
}


def _node_name(block: int, linear: str) -> str:
    return f"/blocks/blocks.{block}/{SCOPES[linear]}/MatMul"


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).mean()) / np.sqrt((b**2).mean()))


def _calibration(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((8, 1, 28, 28), dtype=np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet(search_spaces.get("vit_fashion")).eval()


def _subnet(net: Supernet, bits: tuple[int, ...]) -> nn.Module:
    space = net.space
    cfg = space.largest().replace(depth=len(bits), **{f"l{i}.bits": b for i, b in enumerate(bits)})
    return net.export(space.validate(cfg)).eval()


@pytest.fixture(scope="module")
def compiled(supernet: Supernet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The 4/8/32-bit subnet compiled once for ``ort_mixed``, with its float export."""
    module = _subnet(supernet, BLOCK_BITS)
    bits = layer_bits(module)
    directory = tmp_path_factory.mktemp("mixed")
    target = default_registry().get("ort_mixed")
    path = onnx_for_target(
        deployable(module), (1, 1, 28, 28), target, directory, _calibration(), bits
    )
    yield {"module": module, "bits": bits, "path": path, "fp32": directory / "model.onnx"}


def test_layer_bits_come_from_the_fake_quantizer_before_each_layer(compiled: dict) -> None:
    bits = compiled["bits"]
    for block, b in enumerate(BLOCK_BITS):
        for linear in LINEARS:
            assert bits[f"blocks.{block}.{linear}"] == b
    # no quantizer before the patch embedding and the classifier: they stay float
    assert bits["embedding.conv"] == bits["classifier"] == FULL_BITS
    assert layer_bits(deployable(compiled["module"])) == {k: FULL_BITS for k in bits}


def test_kernels_for_bits() -> None:
    assert [kernel_for(b) for b in (2, 3, 4, 5, 8, 16, 32)] == [
        "w4",
        "w4",
        "w4",
        "int8",
        "int8",
        "fp32",
        "fp32",
    ]
    assert kernel_for(4, conv=True) == "int8"  # no 4-bit convolution kernel


def test_scope_names_give_qualified_module_names() -> None:
    assert (
        scope_module("/blocks/blocks.0/attention/qkv/qkv.1/MatMul") == "blocks.0.attention.qkv.1"
    )
    assert scope_module("/classifier/Gemm") == "classifier"
    assert scope_module("/blocks/blocks.3/mlp/mlp.4/MatMul") == "blocks.3.mlp.4"
    assert scope_module("/MatMul") == ""


def test_nodes_map_to_their_modules(compiled: dict) -> None:
    nodes = layer_nodes(compiled["fp32"], deployable(compiled["module"]), compiled["bits"])
    by_module = {n.module: n for n in nodes}
    assert set(by_module) == set(compiled["bits"])
    for block, b in enumerate(BLOCK_BITS):
        for linear in LINEARS:
            node = by_module[f"blocks.{block}.{linear}"]
            assert node.bits == b and node.kernel == kernel_for(b)
            assert node.op_type == "MatMul"
    assert by_module["classifier"].op_type == "Gemm"
    assert by_module["embedding.conv"].op_type == "Conv"


def test_mapping_is_checked_against_the_weights(compiled: dict, supernet: Supernet) -> None:
    other = deployable(compiled["module"])
    with torch.no_grad():
        other.blocks[1].mlp[1].weight.add_(1.0)
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.1"):
        layer_nodes(compiled["fp32"], other, compiled["bits"])
    shallower = deployable(_subnet(supernet, BLOCK_BITS[:2]))
    with pytest.raises(ValueError, match=r"maps to 'blocks\.2"):
        layer_nodes(compiled["fp32"], shallower, compiled["bits"])


def test_graph_has_matmulnbits_exactly_for_4bit_int8_for_8bit_float_for_32bit(
    compiled: dict,
) -> None:
    import onnx

    graph = onnx.load(str(compiled["path"])).graph
    produced = {o: n for n in graph.node for o in n.output}
    initializers = {i.name for i in graph.initializer}
    expected_w4 = {_node_name(0, linear) + "_Q4" for linear in LINEARS}
    assert {n.name for n in graph.node if n.op_type == "MatMulNBits"} == expected_w4
    for block, b in ((1, 8), (2, 32)):
        for linear in LINEARS:
            name = _node_name(block, linear)
            (node,) = [n for n in graph.node if n.name == name]
            assert node.op_type == "MatMul", (b, name)
            sources = [produced.get(i) for i in node.input]
            if b == 8:  # both operands dequantized from 8-bit integers: an int8 kernel
                assert all(s is not None and s.op_type == "DequantizeLinear" for s in sources)
            else:  # float activations times a float constant weight
                assert node.input[1] in initializers
                assert sources[0] is None or sources[0].op_type != "DequantizeLinear"
    kernels = optimized_op_types(compiled["path"])
    assert "MatMulNBits" in kernels
    assert {"QLinearMatMul", "MatMulIntegerToFloat"} & set(kernels)


def test_outputs_match_the_torch_export_within_the_quantizers_resolution(
    compiled: dict, supernet: Supernet, tmp_path: Path
) -> None:
    """Tolerances, and why.

    The ONNX graph is the export without fake quantization (its weights already on each block's
    grid), so the differences are the kernels' own quantizers:

    * 4-bit weights: ``MatMulNBits`` re-rounds them to a step ``|scale|`` per block of 128 inputs;
      each must lie within one step (half a step plus clipping of the opposite-sign extreme);
    * activations: int8 per block inside ``MatMulNBits`` (accuracy level 4) and uint8 QDQ
      (a 1/255 step of the calibrated range) before the 8-bit layers. With the 4-bit weights
      read back into the torch export, these leave the logits within 3 % relative RMS
      (1.2 % measured), against 8 % with the export's own 4-bit weights and 66 % between
      the export with and without its fake-quantized activations.

    An all-32-bit subnet runs in float: equal to the export up to float summation order.
    """
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    session = _ort_session(compiled["path"], 1)
    logits = np.asarray(session.run(None, {"input": x.numpy()})[0])  # type: ignore[attr-defined]
    emulated = deployable(compiled["module"])
    modules = dict(emulated.named_modules())
    nodes = {n.node: n for n in layer_nodes(compiled["fp32"], emulated, compiled["bits"])}
    weights = w4_weights(compiled["path"])
    assert len(weights) == len(LINEARS)
    for w in weights:
        layer = modules[nodes[w.node.removesuffix("_Q4")].module]
        exported = layer.weight.numpy()
        step = np.repeat(np.abs(w.scales), w.block_size, axis=1)[:, : exported.shape[1]]
        assert np.all(np.abs(w.dequantized.T - exported) <= step * (1 + 1e-5))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.dequantized.T)))
    with torch.no_grad():
        assert _rel_rms(logits, emulated(x).numpy()) < 0.03

    full = _subnet(supernet, (32, 32, 32))
    target = default_registry().get("ort_mixed")
    path = onnx_for_target(
        deployable(full), (1, 1, 28, 28), target, tmp_path, _calibration(), layer_bits(full)
    )
    out = np.asarray(_ort_session(path, 1).run(None, {"input": x.numpy()})[0])  # type: ignore[attr-defined]
    with torch.no_grad():
        np.testing.assert_allclose(out, full(x).numpy(), rtol=1e-4, atol=1e-5)


def test_latency_is_measured_through_measure_latency(compiled: dict) -> None:
    target = default_registry().get("ort_mixed")
    protocol = LatencyProtocol(warmup=1, repeats=5, noise_cv=100.0)
    result = measure_latency(compiled["module"], (1, 1, 28, 28), target, protocol=protocol)
    assert result.target == "ort_mixed" and result.median_ms > 0 and result.repeats == 5


def test_deployed_accuracy_runs_the_mixed_graph(compiled: dict, tmp_path: Path) -> None:
    target = default_registry().get("ort_mixed")
    calib_x = torch.from_numpy(np.concatenate(_calibration()))
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    chunks = [c.numpy() for c in calib_x.split(len(calib_x) // 4)][:4]
    module = compiled["module"]
    path = onnx_for_target(
        deployable(module), (1, 1, 28, 28), target, tmp_path, chunks, layer_bits(module)
    )
    logits = _ort_session(path, 1).run(None, {"input": x.numpy()})[0]  # type: ignore[attr-defined]
    y = torch.from_numpy(np.asarray(logits).argmax(1))
    assert deployed_top1(module, target, calib_x=calib_x, x=x, y=y) == 1.0


def test_mixed_needs_onnxruntime_and_the_layers_bits(compiled: dict, tmp_path: Path) -> None:
    assert "ort_mixed" in default_registry()
    with pytest.raises(ConfigError) as info:
        HardwareTarget.from_dict({"name": "m", "runtime": "torch", "precision": "mixed"})
    msg = str(info.value)
    assert "\n" not in msg
    assert "target.precision='mixed'" in msg and "target.runtime='torch'" in msg
    assert "fp32, int8" in msg and "'onnxruntime'" in msg
    with pytest.raises(ConfigError, match=r"target\.precision") as info:
        HardwareTarget.from_dict({"name": "m", "runtime": "onnxruntime", "precision": "int4"})
    assert "mixed" in str(info.value)
    target = default_registry().get("ort_mixed")
    with pytest.raises(ValueError, match="needs the layers' bits"):
        onnx_for_target(deployable(compiled["module"]), (1, 1, 28, 28), target, tmp_path, [])


def test_a_cnn_maps_its_convolutions_with_batchnorm_folded_in(tmp_path: Path) -> None:
    """The exporter folds BatchNorm into each convolution; the mapping still finds the layer."""
    from nas.deploy.onnx_export import export_module_onnx

    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    net = Supernet(space).eval()
    cfg = space.largest().replace(**{n: 8 for n in space.names if n.endswith(".bits")})
    module = net.export(cfg).eval()
    bits = layer_bits(module)
    plain = deployable(module)
    path = export_module_onnx(plain, (1, 1, 8, 8), tmp_path / "cnn.onnx")
    nodes = layer_nodes(path, plain, bits)
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert convs and {n.bits for n in convs if n.module.startswith("blocks")} == {8}
    target = default_registry().get("ort_mixed")
    result = measure_latency(
        module, (1, 1, 8, 8), target, protocol=LatencyProtocol(warmup=1, repeats=3)
    )
    assert result.median_ms > 0
