"""Real int8 models for int8 targets: ONNX Runtime static QDQ and torch's x86 quantized backend.

The per-block ``bits`` of a config (fake quantization during training) is separate from a
target's precision: a float runtime cannot exploit fake-quantized weights, and these CPU
runtimes have no kernels below 8 bits. An ``int8`` target therefore quantizes the *whole*
exported network to int8 with real integer kernels; mixed-precision deployment (keeping 32-bit
blocks in float) is not modelled.

* **ONNX Runtime**: ``quant_pre_process`` (shape inference + graph optimisation, which folds
  batch norm into the convolutions and turns their biases into initializers), then
  ``quantize_static`` in QDQ format, per-channel symmetric int8 weights, uint8 activations
  (ORT's recommended U8S8 combination on x86) and min-max calibration on the given inputs.
* **torch**: FX graph-mode post-training static quantization (``prepare_fx``/``convert_fx``)
  with the ``x86`` qconfig mapping; conv+bn(+activation) are fused and run as quantized ops.

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

import numpy as np
import torch
from torch import nn

from nas.static import Subnet

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


def quantize_onnx_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Sequence[np.ndarray],
    *,
    input_name: str = "input",
) -> Path:
    """Write a static int8 (QDQ, per-channel) version of the ONNX model at ``fp32_path``.

    Args:
        fp32_path: The float model (e.g. from :func:`nas.onnx_export.export_module_onnx`).
        out_path: Where the quantized model goes.
        calibration: Input batches used to calibrate activation ranges (min-max).
        input_name: Name of the model input.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not calibration:
        raise ValueError("calibration needs at least one input batch")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{input_name: np.ascontiguousarray(b, dtype=np.float32)} for b in calibration]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    out = Path(out_path)
    prepared = out.with_name(out.stem + ".pre.onnx")
    with _quiet_quantizer():
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    prepared.unlink(missing_ok=True)
    return out


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
    """An exported :class:`~nas.static.Subnet` rewritten with an explicit pooling module."""

    def __init__(self, subnet: Subnet) -> None:
        super().__init__()
        self.body = nn.Sequential(subnet.stem, subnet.blocks, subnet.head)
        self.pool = GlobalAvgPool()
        self.classifier = subnet.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.body(x)))


def quantize_torch_int8(module: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """Post-training static int8 quantization of a static module with torch's FX workflow.

    A :class:`~nas.static.Subnet` is first rewritten as a :class:`PooledSubnet`; pooling and
    the classifier stay in float (see :class:`GlobalAvgPool`). The result must run inside
    :func:`quantized_engine` (its packed weights are x86-specific).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not calibration:
        raise ValueError("calibration needs at least one input batch")
    model = copy.deepcopy(module).eval()
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


def is_int8_graph(path: str | Path) -> bool:
    """Whether an ONNX file holds integer (de)quantization nodes, i.e. really runs int8."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    return bool(ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"})


__all__ = [
    "GlobalAvgPool",
    "PooledSubnet",
    "is_int8_graph",
    "quantize_onnx_int8",
    "quantize_torch_int8",
    "quantized_engine",
]
