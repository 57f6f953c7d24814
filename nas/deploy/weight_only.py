"""4-bit weight-only linear layers for ONNX Runtime: ``com.microsoft.MatMulNBits``.

A ``w4`` target (:mod:`nas.measure.targets`) runs every linear layer of the exported network
with 4-bit weights and float activations at the layer boundary:

1. ``Gemm`` nodes with a constant weight (what the exporter writes for ``nn.Linear`` on 2-D
   inputs, e.g. a classifier) are rewritten as ``MatMul`` + ``Add`` (:func:`gemm_as_matmul`),
   because the quantizer only handles ``MatMul``;
2. ONNX Runtime's ``MatMulNBitsQuantizer`` replaces every ``MatMul`` with a constant 2-D weight
   by ``MatMulNBits``: round-to-nearest, symmetric, one float scale per block of
   :data:`W4_BLOCK_SIZE` (128, ONNX Runtime's default) consecutive input features of one output
   feature (zero point 8). Blocks of 32 give a 6-13 % smaller output error but ran 6-45 %
   slower on this CPU (``benchmarks/linear_kernels.py``); a layer with fewer inputs than a
   block is zero-padded to one block;
3. ``accuracy_level`` :data:`W4_ACCURACY_LEVEL` (4) lets the CPU kernel quantize the activations
   to int8 per block and multiply in integers, ONNX Runtime's fastest x86 path; level 0 would
   dequantize the weights and multiply in float.

Matrix products of two activations (attention scores and their weighted sum), LayerNorm, GELU
and softmax stay in float: there is no weight to quantize. No calibration data is needed.

:func:`w4_weights` reads the quantized weights back out of a graph as float matrices, so a
caller (and the tests) can check them against the float weights. Only ``onnx``, ``numpy`` and
``onnxruntime`` are imported.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.deploy.ort_kernels import CONTRIB_DOMAIN, require_ort_kernel

W4_OP = "MatMulNBits"
W4_BLOCK_SIZE = 128
W4_ACCURACY_LEVEL = 4
W4_ZERO_POINT = 8  # MatMulNBits' default 4-bit zero point when none is stored (symmetric)


def require_w4_kernels(needed_by: str = "precision 'w4'") -> None:
    """Raise one ConfigError line unless ONNX Runtime has the ``MatMulNBits`` CPU kernel."""
    require_ort_kernel(
        W4_OP,
        domain=CONTRIB_DOMAIN,
        needed_by=needed_by,
        instead="install an onnxruntime that has it (1.17 or later) or use precision 'int8'",
    )


def run_nbits_quantizer(quantizer: Any) -> None:
    """Run a ``MatMulNBitsQuantizer`` without its per-node INFO log lines."""
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        quantizer.process()
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _keep_root_logger() -> Iterator[None]:
    """Undo the ``logging.basicConfig(level=INFO)`` the quantizer module runs on import."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def gemm_as_matmul(model: object) -> int:
    """Rewrite each ``Gemm`` with a constant weight as ``MatMul`` (+ ``Add``), in place.

    Only the form ``nn.Linear`` exports to is rewritten (``alpha = beta = 1``, ``transA = 0``,
    constant ``B`` and ``C``); the weight is stored transposed when ``transB = 1``. Returns the
    number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    initializers = {init.name: init for init in graph.initializer}
    rewritten = 0
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        linear = (
            node.op_type == "Gemm"
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
            and attrs.get("transA", 0) == 0
            and len(node.input) >= 2
            and node.input[1] in initializers
            and (len(node.input) < 3 or not node.input[2] or node.input[2] in initializers)
        )
        if not linear:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}_as_matmul"
        stored = numpy_helper.from_array(np.ascontiguousarray(weight), weight_name)
        graph.initializer.append(stored)
        has_bias = len(node.input) >= 3 and bool(node.input[2])
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        name = node.name or f"gemm_{rewritten}"
        nodes.append(
            helper.make_node("MatMul", [node.input[0], weight_name], [product], name=name)
        )
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{name}_bias"
                )
            )
        rewritten += 1
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return rewritten


def quantize_onnx_w4(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    block_size: int = W4_BLOCK_SIZE,
    accuracy_level: int = W4_ACCURACY_LEVEL,
) -> Path:
    """Write a version of the float ONNX model with every linear layer as 4-bit ``MatMulNBits``.

    Args:
        fp32_path: The float model (e.g. from :func:`nas.deploy.onnx_export.export_module_onnx`).
        out_path: Where the weight-only quantized model goes.
        block_size: Input features sharing one scale (a power of two, at least 16).
        accuracy_level: ``MatMulNBits`` compute type: 4 multiplies int8-quantized activations
            by the 4-bit weights in integers; 0 or 1 multiply in float.

    Raises:
        ConfigError: when the installed ONNX Runtime has no ``MatMulNBits`` kernel, or the
            graph has no linear layer to quantize.
    """
    import onnx

    require_w4_kernels()
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size={block_size} must be a power of two >= 16")
    model = onnx.load(str(fp32_path))
    gemm_as_matmul(model)
    with _keep_root_logger():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
        )
        run_nbits_quantizer(quantizer)
    quantized = quantizer.model.model
    if not any(node.op_type == W4_OP for node in quantized.graph.node):
        from nas.errors import ConfigError

        raise ConfigError(
            f"{fp32_path}: no MatMul with a constant 2-D weight to quantize to 4 bits"
        )
    out = Path(out_path)
    onnx.save(quantized, str(out))
    return out


@dataclass(frozen=True)
class W4Weight:
    """One ``MatMulNBits`` node's weight read back as floats.

    Attributes:
        node: The node's name.
        dequantized: ``(K, N)`` float weight the kernel multiplies by (``x @ dequantized``).
        scales: ``(N, K // block_size)`` scale of each block (input features of one output).
        block_size: Input features per block.
    """

    node: str
    dequantized: np.ndarray
    scales: np.ndarray
    block_size: int


def w4_weights(path: str | Path) -> list[W4Weight]:
    """The dequantized 4-bit weights of every ``MatMulNBits`` node of the model at ``path``.

    Unpacks the ``(N, blocks, block_size / 2)`` uint8 blob (two 4-bit values per byte, the low
    nibble first) and applies ``(q - zero_point) * scale`` per block.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = []
    for node in model.graph.node:
        if node.op_type != W4_OP:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, n, block = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"])
        if int(attrs.get("bits", 4)) != 4:
            raise ValueError(f"{node.name}: bits={attrs.get('bits')} is not 4")
        blocks = -(-k // block)
        packed = initializers[node.input[1]].reshape(n, blocks, block // 2)
        codes = np.empty((n, blocks, block), dtype=np.int16)
        codes[..., 0::2] = packed & 0x0F
        codes[..., 1::2] = packed >> 4
        scales = initializers[node.input[2]].astype(np.float32).reshape(n, blocks)
        if len(node.input) > 3 and node.input[3]:
            zp_packed = initializers[node.input[3]].reshape(n, -1)
            zero = np.empty((n, zp_packed.shape[1] * 2), dtype=np.int16)
            zero[:, 0::2] = zp_packed & 0x0F
            zero[:, 1::2] = zp_packed >> 4
            zero = zero[:, :blocks]
        else:
            zero = np.full((n, blocks), W4_ZERO_POINT, dtype=np.int16)
        values = (codes - zero[..., None]).astype(np.float32) * scales[..., None]
        dequantized = values.reshape(n, blocks * block)[:, :k].T
        weights.append(W4Weight(node.name, np.ascontiguousarray(dequantized), scales, block))
    return weights


def is_w4_graph(path: str | Path) -> bool:
    """Whether the ONNX model at ``path`` holds at least one 4-bit ``MatMulNBits`` node."""
    import onnx
    from onnx import helper

    for node in onnx.load(str(path)).graph.node:
        if node.op_type == W4_OP and node.domain == CONTRIB_DOMAIN:
            bits = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("bits", 4)
            if bits == 4:
                return True
    return False


__all__ = [
    "W4_ACCURACY_LEVEL",
    "W4_BLOCK_SIZE",
    "W4_OP",
    "W4Weight",
    "gemm_as_matmul",
    "is_w4_graph",
    "quantize_onnx_w4",
    "require_w4_kernels",
    "w4_weights",
]
