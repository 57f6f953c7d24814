"""The ONNX file an ``onnxruntime`` target runs: the float export, compiled to its precision.

One function, used by latency (:mod:`nas.measure.latency`) and deployed accuracy
(:mod:`nas.measure.deployed_accuracy`) alike, so both time and score the same graph:

* ``fp32``: the export itself;
* ``int8``: static QDQ int8 (:func:`nas.deploy.int8.quantize_onnx_int8`), calibrated on the
  given batches;
* ``w4``: every linear layer as 4-bit ``MatMulNBits``
  (:func:`nas.deploy.weight_only.quantize_onnx_w4`), no calibration;
* ``mixed``: each layer at its block's bits (:func:`nas.deploy.mixed_precision.onnx_mixed`):
  ``MatMulNBits`` at <= 4 bits, QDQ int8 at 5-8 (calibrated), float at 32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from nas.deploy.int8 import quantize_onnx_int8
from nas.deploy.mixed_precision import onnx_mixed
from nas.deploy.onnx_export import export_module_onnx
from nas.deploy.weight_only import quantize_onnx_w4
from nas.measure.targets import HardwareTarget


def onnx_for_target(
    model: nn.Module,
    input_shape: tuple[int, ...],
    target: HardwareTarget,
    directory: str | Path,
    calibration: Sequence[np.ndarray],
    bits: Mapping[str, int] | None = None,
) -> Path:
    """Export ``model`` (deployable, eval mode) into ``directory`` at ``target``'s precision.

    Args:
        model: A static module without fake quantization (:func:`~nas.measure.latency.deployable`).
        input_shape: Example input shape; the batch dimension stays dynamic.
        target: An ``onnxruntime`` target.
        directory: Where the files go (the caller owns and removes it).
        calibration: Input batches for int8 activation ranges (unused by fp32 and w4).
        bits: For ``mixed``: each layer's bits by module name,
            :func:`~nas.deploy.mixed_precision.layer_bits` of the module *before* its fake
            quantization was stripped (``model`` no longer carries them).

    Returns:
        The path of the ONNX file to run.
    """
    if target.runtime != "onnxruntime":
        raise ValueError(f"target {target.name!r} runs on {target.runtime!r}, not onnxruntime")
    target.require_kernels()
    directory = Path(directory)
    path = export_module_onnx(model, tuple(input_shape), directory / "model.onnx")
    if target.precision == "int8":
        return quantize_onnx_int8(path, directory / "model.int8.onnx", calibration)
    if target.precision == "w4":
        return quantize_onnx_w4(path, directory / "model.w4.onnx")
    if target.precision == "mixed":
        if bits is None:
            raise ValueError(f"target {target.name!r} (precision 'mixed') needs the layers' bits")
        return onnx_mixed(model, path, directory / "model.mixed.onnx", bits, calibration)
    return path


__all__ = ["onnx_for_target"]
