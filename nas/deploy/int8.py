"""Real int8 models for int8 targets: ONNX Runtime static QDQ and torch's x86 quantized backend.

The per-block ``bits`` of a config (fake quantization during training) is separate from a
target's precision: a float runtime cannot exploit fake-quantized weights, and these CPU
runtimes have no int8-activation kernels below 8 bits. An ``int8`` target therefore quantizes
the *whole* exported network to int8 with real integer kernels; mixed-precision deployment
(keeping 32-bit blocks in float) is not modelled. (4-bit *weight-only* linear layers are the
``w4`` precision, :mod:`nas.deploy.weight_only`.)

* **ONNX Runtime**: ``quant_pre_process`` (shape inference + graph optimisation, which folds
  batch norm into the convolutions and turns their biases into initializers), then
  ``quantize_static`` in QDQ format, per-channel symmetric int8 weights, uint8 activations
  (ORT's recommended U8S8 combination on x86) and min-max calibration on the given inputs.
  Every operator ORT can quantize is quantized except ``Softmax`` and the products of two
  activations: a uint8 attention probability has a resolution of 1/255 where the probabilities
  average 1/tokens. So attention's ``P @ V`` runs in float; ``Q @ K^T`` still becomes an integer
  kernel, since its inputs and output are quantized for the neighbouring layers anyway. ORT fuses
  the QDQ groups into integer kernels (``QLinearConv``, ``QLinearMatMul``, ``QGemm``), which
  :func:`nas.deploy.ort_kernels.optimized_op_types` lists. Convolutional graphs have neither
  operator, so they are quantized whole.
* **torch**: the scheme follows where the weights are (:func:`torch_int8_scheme`):
  convolutional networks get FX graph-mode post-training *static* quantization
  (``prepare_fx``/``convert_fx``, ``x86`` qconfig mapping; conv+bn(+activation) fused and run as
  quantized ops); networks whose weights are mostly in ``nn.Linear`` layers (transformers) get
  PyTorch's recipe for them, *dynamic* quantization of every ``nn.Linear`` (per-channel int8
  weights, activations quantized per batch at run time, ``quantized::linear_dynamic`` kernels);
  it needs no symbolic tracing, so it works on any static module.

Calibration inputs only set the quantization ranges. Timing does not depend on their values,
so latency measurement calibrates on seeded random inputs; accuracy work should pass real data.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nas.supernets.mbconv.static import Subnet

QUANTIZED_ENGINE = "x86"


class _DropRootWarnings(logging.Filter):
    """Hides onnxruntime.quantization's advisory root-logger warnings while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    log_filter = _DropRootWarnings()
    root.addFilter(log_filter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(log_filter)


def calibration_reader(calibration: Sequence[np.ndarray], input_name: str = "input") -> Any:
    """ONNX Runtime's calibration reader over float input batches (min-max calibration)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{input_name: np.ascontiguousarray(b, dtype=np.float32)} for b in calibration]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return _Reader()


def quantize_onnx_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Sequence[np.ndarray],
    *,
    input_name: str = "input",
) -> Path:
    """Write a static int8 (QDQ, per-channel) version of the ONNX model at ``fp32_path``.

    Args:
        fp32_path: The float model (e.g. from :func:`nas.deploy.onnx_export.export_module_onnx`).
        out_path: Where the quantized model goes.
        calibration: Input batches used to calibrate activation ranges (min-max).
        input_name: Name of the model input.
    """
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not calibration:
        raise ValueError("calibration needs at least one input batch")
    reader = calibration_reader(calibration, input_name)

    out = Path(out_path)
    prepared = out.with_name(out.stem + ".pre.onnx")
    with _quiet_quantizer():
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = float_kept_nodes(prepared)
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
    prepared.unlink(missing_ok=True)
    return out


FLOAT_KEPT_OPS: frozenset[str] = frozenset({"Softmax"})


def float_kept_nodes(path: str | Path) -> list[str]:
    """Nodes :func:`quantize_onnx_int8` excludes: activation × activation MatMul, Softmax.

    An excluded product still runs as an integer kernel when its neighbours quantize both its
    inputs and its output (attention's ``Q @ K^T``); ``Softmax`` and the product of its output
    (``P @ V``) stay in float. Unnamed nodes are given a name in the file first (the quantizer
    excludes nodes by name).
    """
    import onnx

    model = onnx.load(str(path))
    constants = {init.name for init in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    renamed = False
    kept = []
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
            renamed = True
        two_activations = node.op_type == "MatMul" and not (set(node.input) & constants)
        if two_activations or node.op_type in FLOAT_KEPT_OPS:
            kept.append(node.name)
    if renamed:
        onnx.save(model, str(path))
    return kept


@contextlib.contextmanager
def quantized_engine(engine: str = QUANTIZED_ENGINE) -> Iterator[None]:
    """Select torch's quantized backend for a block of code, restoring the previous one."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions, kept in float by :func:`quantize_torch_int8`.

    torch's quantized ``mean`` fails on 1×1 feature maps ("required rank 4 tensor to use
    channels_last format", torch 2.13), so int8 torch models dequantize before pooling; the
    pooled features and the classifier (a tiny share of the compute) run in float.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PooledSubnet(nn.Module):
    """An exported MBConv :class:`~nas.supernets.mbconv.static.Subnet` with explicit pooling."""

    def __init__(self, subnet: Subnet) -> None:
        super().__init__()
        self.body = nn.Sequential(subnet.stem, subnet.blocks, subnet.head)
        self.pool = GlobalAvgPool()
        self.classifier = subnet.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.body(x)))


TorchInt8Scheme = Literal["static", "dynamic"]


def torch_int8_scheme(module: nn.Module) -> TorchInt8Scheme:
    """``"dynamic"`` when ``nn.Linear`` layers hold more weights than convolutions, else static.

    Decided by the module's layers alone (any static module, whatever made it): a transformer's
    patch-embedding convolution or a CNN's classifier does not change its answer.
    """
    layers = list(module.modules())
    conv = sum(m.weight.numel() for m in layers if isinstance(m, nn.modules.conv._ConvNd))
    linear = sum(m.weight.numel() for m in layers if isinstance(m, nn.Linear))
    return "dynamic" if linear > conv else "static"


def quantize_torch_int8(module: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """Post-training int8 quantization of a static module on torch's x86 backend.

    The scheme is :func:`torch_int8_scheme`'s. ``"static"`` (FX workflow, calibrated on
    ``calibration``): a :class:`~nas.supernets.mbconv.static.Subnet` is first rewritten as a
    :class:`PooledSubnet`; pooling and the classifier stay in float (see
    :class:`GlobalAvgPool`). ``"dynamic"``: every ``nn.Linear`` becomes a dynamically quantized
    linear layer with per-channel int8 weights (``calibration`` is not needed). The result must
    run inside :func:`quantized_engine` (its packed weights are x86-specific).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not calibration:
        raise ValueError("calibration needs at least one input batch")
    model = copy.deepcopy(module).eval()
    if torch_int8_scheme(model) == "dynamic":
        return quantize_torch_dynamic_int8(model)
    if isinstance(model, Subnet):
        model = PooledSubnet(model)
    qconfig_mapping = get_default_qconfig_mapping(QUANTIZED_ENGINE)
    qconfig_mapping.set_object_type(GlobalAvgPool, None)
    if isinstance(model, PooledSubnet):
        qconfig_mapping.set_module_name("classifier", None)
    custom = PrepareCustomConfig().set_non_traceable_module_classes([GlobalAvgPool])
    with _quiet_quantizer(), quantized_engine():
        prepared = prepare_fx(
            model, qconfig_mapping, (calibration[0],), prepare_custom_config=custom
        )
        with torch.no_grad():
            for batch in calibration:
                prepared(batch)
        return convert_fx(prepared)


def quantize_torch_dynamic_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` dynamically quantized (per-channel int8)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(module).eval()
    with _quiet_quantizer(), quantized_engine():
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig})


def has_torch_int8_kernels(module: nn.Module) -> bool:
    """Whether a torch module holds quantized int8 conv or linear layers (static or dynamic).

    Fused FX modules (``ConvReLU2d``, ``LinearReLU``) subclass the quantized ones.
    """
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd

    quantized = (nnq.Linear, nnqd.Linear, nnq.Conv2d)
    return any(isinstance(m, quantized) for m in module.modules())


INT8_KERNEL_OPS: frozenset[str] = frozenset(
    {
        "QLinearConv",
        "ConvInteger",
        "QLinearMatMul",
        "MatMulInteger",
        "QGemm",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)


def is_int8_graph(path: str | Path) -> bool:
    """Whether an ONNX file really runs int8: integer kernels, or 8-bit (de)quantization nodes.

    A ``QuantizeLinear``/``DequantizeLinear`` counts when its zero point is an int8 or uint8
    tensor (not a 4-bit one); ``MatMulNBits`` (4-bit weights) does not count.
    """
    import onnx

    model = onnx.load(str(path))
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    zero_points = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in INT8_KERNEL_OPS:
            return True
        quantizes = node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2
        if quantizes and zero_points.get(node.input[2]) in eight_bit:
            return True
    return False


__all__ = [
    "FLOAT_KEPT_OPS",
    "INT8_KERNEL_OPS",
    "GlobalAvgPool",
    "PooledSubnet",
    "TorchInt8Scheme",
    "float_kept_nodes",
    "has_torch_int8_kernels",
    "is_int8_graph",
    "quantize_onnx_int8",
    "quantize_torch_dynamic_int8",
    "quantize_torch_int8",
    "quantized_engine",
    "torch_int8_scheme",
]
