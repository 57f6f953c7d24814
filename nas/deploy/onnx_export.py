"""ONNX export of static modules (the exported subnets), with a dynamic batch dimension."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_module_onnx(
    module: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``module`` (eval mode) to ``path`` atomically; input ``input``, output ``logits``.

    ``metadata`` lands in the model's ``metadata_props``, which a deployment reads without us.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(input_shape)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but yields a plain-op graph quickly and
            # reliably for these static modules; the torch.export path is not needed here.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module.eval(),
                (example,),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        if metadata:
            _set_metadata(Path(tmp), metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _set_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Write ``metadata`` into the ONNX file's ``metadata_props`` (in place)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    onnx.save(model, str(path))
