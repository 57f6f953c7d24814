"""Accuracy of a subnet as a hardware target runs it, not as the supernet simulates it.

The supernet scores a subnet with fake quantization at its per-layer bits; a target deploys a
different model: ``fp32`` runtimes run the float weights without fake quantization, ``int8``
ones run real int8 kernels (torch FX or dynamic linear, ONNX Runtime QDQ) calibrated on the
calibration split, ``w4`` runs ONNX Runtime's 4-bit ``MatMulNBits`` linear layers, ``mixed``
each layer on the kernel of its block's bits (:mod:`nas.deploy.mixed_precision`).
Both can change predictions, so each exported subnet reports ``top1_test@<target>`` beside the
supernet's ``top1_test``.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch
from torch import Tensor, nn

from nas.deploy.int8 import quantize_torch_int8, quantized_engine
from nas.deploy.mixed_precision import layer_bits
from nas.measure.latency import _ort_session, deployable
from nas.measure.targets import HardwareTarget


@torch.no_grad()
def deployed_top1(
    module: nn.Module,
    target: HardwareTarget,
    *,
    calib_x: Tensor,
    x: Tensor,
    y: Tensor,
    batch_size: int = 256,
    calibration_batches: int = 4,
) -> float:
    """Top-1 (fraction) of ``module`` on ``(x, y)`` compiled for ``target``'s runtime.

    ``calib_x`` (normalised calibration images) sets int8 activation ranges; it must not
    overlap ``x``.
    """
    target.require_kernels()
    bits = layer_bits(module) if target.precision == "mixed" else None
    model = deployable(module)
    chunks = list(calib_x.split(max(1, len(calib_x) // calibration_batches)))[:calibration_batches]
    correct = 0
    if target.runtime == "torch":
        if target.precision == "int8":
            model = quantize_torch_int8(model, chunks)
            with quantized_engine():
                for xs, ys in zip(x.split(batch_size), y.split(batch_size), strict=True):
                    correct += int((model(xs).argmax(1) == ys).sum())
        else:
            for xs, ys in zip(x.split(batch_size), y.split(batch_size), strict=True):
                correct += int((model(xs).argmax(1) == ys).sum())
        return correct / max(1, len(y))
    from nas.measure.onnx_deploy import onnx_for_target

    with tempfile.TemporaryDirectory(prefix="nas-accuracy-") as tmp:
        calibration = [c.numpy() for c in chunks]
        path = onnx_for_target(model, (1, *x.shape[1:]), target, tmp, calibration, bits)
        session = _ort_session(path, max(1, target.threads))
        for xs, ys in zip(x.split(batch_size), y.split(batch_size), strict=True):
            logits = session.run(None, {"input": xs.numpy()})[0]  # type: ignore[attr-defined]
            correct += int((np.asarray(logits).argmax(1) == ys.numpy()).sum())
    return correct / max(1, len(y))
