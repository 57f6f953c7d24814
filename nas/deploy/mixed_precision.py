"""Per-layer mixed precision for ONNX Runtime: each linear layer at its block's bit-width.

A ``mixed`` target (:mod:`nas.measure.targets`, runtime ``onnxruntime`` only) deploys the bits
a subnet's config gives each block, read from the exported module: the
:class:`~nas.elastic.quantization.FakeQuantize` right before an ``nn.Linear`` / ``nn.Conv2d`` in
its
``nn.Sequential`` carries the layer's bit-width; ``nn.Identity`` there (or no quantizer, e.g. a
patch embedding or classifier) means 32 bits. Each layer then runs on the nearest real kernel
at or above its bits (:func:`kernel_for`):

* ``bits <= 4``, linear layers: 4-bit weight-only ``MatMulNBits`` (as the ``w4`` precision,
  :mod:`nas.deploy.weight_only`); 2- and 3-bit layers run on these 4-bit kernels, since ONNX
  Runtime's CPU provider has no narrower ones;
* ``5 <= bits <= 8`` (and convolutions at ``<= 4`` bits: there is no 4-bit convolution kernel):
  static QDQ int8 for those nodes only (per-channel int8 weights, uint8 activations, min-max
  calibration), as the ``int8`` precision does for the whole graph (:mod:`nas.deploy.int8`);
* 32 bits: the float layer as exported.

ONNX nodes are mapped to torch modules through the exporter's scope names (``/blocks/blocks.0/
attention/qkv/qkv.1/MatMul`` is module ``blocks.0.attention.qkv.1``; :func:`scope_module`), and
every mapping is checked against the module's weight, so a change in the exporter's naming
fails loudly instead of quantizing the wrong layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from torch import nn

from nas.elastic.quantization import FakeQuantize

FULL_BITS = 32
W4_MAX_BITS = 4
INT8_MAX_BITS = 8
LINEAR_OPS: frozenset[str] = frozenset({"MatMul", "Gemm", "Conv"})

Kernel = Literal["w4", "int8", "fp32"]


def layer_bits(module: nn.Module) -> dict[str, int]:
    """Bit-width of every ``nn.Linear`` / ``nn.Conv2d`` of a static module, by qualified name.

    A layer's bits are those of the :class:`~nas.elastic.quantization.FakeQuantize` immediately
    before it in
    its ``nn.Sequential`` (how exported subnets are built, and how cost counting reads them);
    any other layer is at :data:`FULL_BITS`. Read this before fake quantization is stripped.
    """
    bits: dict[int, int] = {}
    for mod in module.modules():
        if isinstance(mod, nn.Sequential):
            for prev, cur in itertools.pairwise(mod.children()):
                if isinstance(prev, FakeQuantize) and isinstance(cur, nn.Linear | nn.Conv2d):
                    bits[id(cur)] = int(prev.bits)
    return {
        name: bits.get(id(mod), FULL_BITS)
        for name, mod in module.named_modules()
        if isinstance(mod, nn.Linear | nn.Conv2d)
    }


def kernel_for(bits: int, *, conv: bool = False) -> Kernel:
    """The real kernel a layer at ``bits`` runs on: the narrowest one that holds its bits."""
    if bits <= W4_MAX_BITS and not conv:
        return "w4"
    if bits <= INT8_MAX_BITS:
        return "int8"
    return "fp32"


def scope_module(node_name: str) -> str:
    """The qualified torch module name of an exported node, from its scope name.

    The exporter names a node ``/<scope>/.../<op>``, one scope per module on the path from the
    root, each the module's qualified name from its last non-numeric atom on (``blocks.0``,
    ``attention``, ``qkv.1``). The last atom of each scope is that module's own name, so joining
    them gives the qualified name back: ``/blocks/blocks.0/attention/qkv/qkv.1/MatMul`` →
    ``blocks.0.attention.qkv.1``; a root-level node (``/MatMul``) gives ``""``.
    """
    scopes = node_name.strip("/").split("/")[:-1]
    return ".".join(scope.rsplit(".", 1)[-1] for scope in scopes)


@dataclass(frozen=True)
class LayerNode:
    """One ONNX node of a linear layer, with the module it came from and its kernel."""

    node: str
    op_type: str
    module: str
    bits: int
    kernel: Kernel


def _node_weight(node: object, initializers: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The node's constant weight in torch layout (``out × in`` / conv ``out × in × k × k``)."""
    from onnx import helper

    if len(node.input) < 2 or node.input[1] not in initializers:  # type: ignore[attr-defined]
        return None
    weight = initializers[node.input[1]]  # type: ignore[attr-defined]
    if node.op_type == "MatMul":  # type: ignore[attr-defined]
        return weight.T if weight.ndim == 2 else None
    if node.op_type == "Gemm":  # type: ignore[attr-defined]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}  # type: ignore[attr-defined]
        return weight if attrs.get("transB", 0) else weight.T
    return weight


def _same_weight(found: np.ndarray, expected: np.ndarray, *, conv: bool) -> bool:
    """Equal weights; for a convolution, equal up to one factor per output channel.

    The exporter folds a BatchNorm that follows a convolution into the convolution's weight,
    which scales each output channel; the node is still that layer.
    """
    if found.shape != expected.shape:
        return False
    if np.array_equal(found, expected):
        return True
    if not conv:
        return False
    rows_f = found.reshape(found.shape[0], -1).astype(np.float64)
    rows_e = expected.reshape(expected.shape[0], -1).astype(np.float64)
    norms = (rows_e * rows_e).sum(axis=1)
    scale = np.divide(
        (rows_f * rows_e).sum(axis=1), norms, out=np.ones_like(norms), where=norms > 0
    )
    return bool(np.allclose(rows_f, scale[:, None] * rows_e, rtol=1e-4, atol=1e-6))


def layer_nodes(
    onnx_path: str | Path, module: nn.Module, bits: Mapping[str, int]
) -> list[LayerNode]:
    """Map the linear/conv nodes of the float export of ``module`` to its layers and bits.

    Args:
        onnx_path: The float ONNX export of ``module``
            (:func:`nas.deploy.onnx_export.export_module_onnx`).
        module: The module that was exported (its weights verify the mapping).
        bits: :func:`layer_bits` of the module (read before fake quantization was stripped).

    Raises:
        ValueError: a node's scope names no layer of ``module``, its weight differs from that
            layer's, or a layer of ``module`` has no node.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = {
        name: mod for name, mod in module.named_modules() if isinstance(mod, nn.Linear | nn.Conv2d)
    }
    nodes: list[LayerNode] = []
    for node in model.graph.node:
        if node.op_type not in LINEAR_OPS:
            continue
        weight = _node_weight(node, initializers)
        if weight is None:  # a product of two activations (attention), not a layer
            continue
        name = scope_module(node.name)
        layer = layers.get(name)
        if layer is None:
            raise ValueError(f"ONNX node {node.name!r} maps to {name!r}, not a linear/conv layer")
        expected = layer.weight.detach().cpu().numpy()
        if not _same_weight(weight, expected, conv=isinstance(layer, nn.Conv2d)):
            raise ValueError(f"ONNX node {node.name!r}: weight differs from module {name!r}")
        b = int(bits.get(name, FULL_BITS))
        kernel = kernel_for(b, conv=isinstance(layer, nn.Conv2d))
        nodes.append(LayerNode(node.name, node.op_type, name, b, kernel))
    missing = sorted(set(layers) - {n.module for n in nodes})
    if missing:
        raise ValueError(f"{onnx_path}: no ONNX node for layers {missing}")
    return nodes


def _quantize_int8_nodes(
    fp32_path: Path, out_path: Path, names: Sequence[str], calibration: Sequence[np.ndarray]
) -> Path:
    """Static QDQ int8 of the named nodes only (the ``int8`` precision's settings)."""
    import onnx
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from nas.deploy.int8 import _quiet_quantizer, calibration_reader

    if not calibration:
        raise ValueError("calibration needs at least one input batch for int8 layers")

    prepared = out_path.with_name(out_path.stem + ".pre.onnx")
    with _quiet_quantizer():
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        present = {n.name for n in onnx.load(str(prepared)).graph.node}
        lost = sorted(set(names) - present)
        if lost:
            raise ValueError(f"graph pre-processing renamed or removed int8 nodes {lost}")
        quantize_static(
            str(prepared),
            str(out_path),
            calibration_reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=list(names),
        )
    prepared.unlink(missing_ok=True)
    return out_path


def _quantize_w4_nodes(path: Path, out_path: Path, names: Sequence[str]) -> Path:
    """4-bit ``MatMulNBits`` for the named nodes only (the ``w4`` precision's settings)."""
    import onnx

    from nas.deploy import weight_only as w4

    model = onnx.load(str(path))
    w4.gemm_as_matmul(model)  # keeps node names; float Gemms fuse back in ORT
    with w4._keep_root_logger():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=w4.W4_BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=w4.W4_ACCURACY_LEVEL,
            # ``nodes_to_include`` only adds to the quantized op types: exclude everything else
            nodes_to_exclude=[n.name for n in model.graph.node if n.name not in set(names)],
        )
        w4.run_nbits_quantizer(quantizer)
    quantized = quantizer.model.model
    done = {n.name.removesuffix("_Q4") for n in quantized.graph.node if n.op_type == w4.W4_OP}
    if done != set(names):
        raise ValueError(f"MatMulNBits replaced {sorted(done)}, expected {sorted(names)}")
    onnx.save(quantized, str(out_path))
    return out_path


def quantize_onnx_mixed(
    fp32_path: str | Path,
    out_path: str | Path,
    nodes: Sequence[LayerNode],
    calibration: Sequence[np.ndarray],
) -> Path:
    """Write the float model with each layer node on its kernel (:func:`layer_nodes`).

    int8 first (its pre-processing and calibration see a float graph), then ``MatMulNBits`` on
    the 4-bit nodes, whose weights are still constants after QDQ quantization of the others.
    """
    from nas.deploy.weight_only import require_w4_kernels

    fp32_path, out = Path(fp32_path), Path(out_path)
    int8 = [n.node for n in nodes if n.kernel == "int8"]
    w4 = [n.node for n in nodes if n.kernel == "w4"]
    current = fp32_path
    if int8:
        current = _quantize_int8_nodes(
            current, out.with_name(out.stem + ".int8.onnx"), int8, calibration
        )
    if w4:
        require_w4_kernels(needed_by="precision 'mixed' (layers at <= 4 bits)")
        current = _quantize_w4_nodes(current, out.with_name(out.stem + ".w4.onnx"), w4)
    if current != out:
        out.write_bytes(current.read_bytes())
    return out


def onnx_mixed(
    model: nn.Module,
    fp32_path: str | Path,
    out_path: str | Path,
    bits: Mapping[str, int],
    calibration: Sequence[np.ndarray],
) -> Path:
    """The ``mixed`` deployment of ``model``'s float export: map its layers, then quantize."""
    return quantize_onnx_mixed(
        fp32_path, out_path, layer_nodes(fp32_path, model, bits), calibration
    )


__all__ = [
    "FULL_BITS",
    "INT8_MAX_BITS",
    "W4_MAX_BITS",
    "Kernel",
    "LayerNode",
    "kernel_for",
    "layer_bits",
    "layer_nodes",
    "onnx_mixed",
    "quantize_onnx_mixed",
    "scope_module",
]
