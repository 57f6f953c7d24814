"""Export Pareto-front subnets as self-describing directories, and load them back.

Each subnet directory holds ``model.safetensors`` (the static module's weights), ``model.onnx``
and ``model_card.json`` (config, search space, measured and predicted metrics with their
targets, preprocessing, supernet checkpoint hash, seed, library versions). Loading rebuilds the
static module from the card and the space, so no code object is ever unpickled.

The ONNX graph starts with the data set's normalisation, so a deployment feeds it raw pixels in
the card's ``preprocessing.raw_range``; :func:`load_exported` gives the torch module either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import search_spaces
from nas.errors import ConfigError, IncompatibleArtifactError
from nas.subnet import SubnetConfig

CARD_NAME = "model_card.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
CARD_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on."""
    versions = {"python": platform.python_version()}
    for dist in ("torch", "numpy", "scikit-learn", "onnx", "onnxruntime", "nas-platform"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (checkpoint identity in model cards)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file and ``os.replace`` so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ExportedSubnet:
    """Where one exported subnet lives and what its card says."""

    path: Path
    config: SubnetConfig
    card: Mapping[str, Any] = field(default_factory=dict)


class RawPixelModel(nn.Module):
    """A subnet behind its data set's normalisation: takes raw pixels, returns logits.

    Carrying the normalisation inside the model means a deployment cannot feed the wrong scale.
    """

    def __init__(self, model: nn.Module, preprocessing: Mapping[str, Any]) -> None:
        super().__init__()
        self.model = model
        mean = torch.tensor([float(v) for v in preprocessing["mean"]]).view(1, -1, 1, 1)
        std = torch.tensor([float(v) for v in preprocessing["std"]]).view(1, -1, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", 1.0 / std)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.model((raw - self.mean) * self.inv_std)


def export_subnet(
    supernet: nn.Module,
    config: SubnetConfig,
    out_dir: str | Path,
    *,
    measured: Mapping[str, float] | None = None,
    predicted: Mapping[str, float] | None = None,
    onnx: bool = True,
    preprocessing: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ExportedSubnet:
    """Write one subnet directory. ``measured``/``predicted`` keys are ``metric@target`` names.

    With ``preprocessing`` (:meth:`nas.data.Preprocessing.to_dict`), the card records it and the
    ONNX graph takes raw pixels; without it, the graph takes normalised inputs.
    """
    from nas.supernet import Supernet

    if not isinstance(supernet, Supernet):
        raise TypeError("export_subnet needs a nas.supernet.Supernet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = supernet.export(config).eval()
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=out)
    os.close(fd)
    save_file(state, tmp, metadata={"format": "nas-subnet"})
    os.replace(tmp, out / WEIGHTS_NAME)
    if onnx:
        from nas.onnx_export import export_module_onnx

        graph = module if preprocessing is None else RawPixelModel(module, preprocessing)
        export_module_onnx(graph.eval(), supernet.input_shape(), out / ONNX_NAME)
    space = supernet.space
    card = {
        "card_version": CARD_VERSION,
        "config": config.to_dict(),
        "config_key": config.key,
        "search_space": search_spaces.describe(space),
        "input_shape": list(supernet.input_shape()),
        "preprocessing": dict(preprocessing) if preprocessing is not None else None,
        "onnx_input": "raw pixels" if preprocessing is not None else "normalised",
        "metrics": {
            "measured": dict(measured or {}),
            "predicted": dict(predicted or {}),
        },
        "files": {"weights": WEIGHTS_NAME, "onnx": ONNX_NAME if onnx else None},
        "weights_sha256": file_sha256(out / WEIGHTS_NAME),
        "versions": library_versions(),
        **dict(extra or {}),
    }
    write_json_atomic(out / CARD_NAME, card)
    return ExportedSubnet(out, config, card)


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of an exported subnet directory."""
    card_path = Path(path) / CARD_NAME
    if not card_path.exists():
        raise ConfigError(f"{path} is not an exported subnet: {CARD_NAME} is missing")
    return json.loads(card_path.read_text())


def load_exported(path: str | Path, *, raw_input: bool = False) -> nn.Module:
    """Rebuild an exported subnet as a static module with its weights (eval mode).

    With ``raw_input``, the module takes raw pixels like the ONNX graph (the card's
    preprocessing applied inside); otherwise it takes normalised inputs.

    Raises:
        IncompatibleArtifactError: the search space named in the card no longer matches.
    """
    from nas.supernet import Supernet

    path = Path(path)
    card = read_card(path)
    space = search_spaces.rebuild(card["search_space"], artifact=str(path))
    config = space.validate(card["config"])
    with torch.device("meta"):
        skeleton = Supernet(space)
    module = skeleton.to_empty(device="cpu").export(config)
    weights = path / card["files"]["weights"]
    if file_sha256(weights) != card["weights_sha256"]:
        raise IncompatibleArtifactError(f"{weights}: checksum differs from the model card")
    module.load_state_dict(load_file(weights), strict=True)
    if raw_input:
        if not card.get("preprocessing"):
            raise IncompatibleArtifactError(
                f"{path}: the model card records no preprocessing, so raw_input is unavailable"
            )
        return RawPixelModel(module, card["preprocessing"]).eval()
    return module.eval()


def exported_paths(root: str | Path) -> Sequence[Path]:
    """Exported subnet directories below ``root``, sorted."""
    return sorted(p.parent for p in Path(root).glob(f"*/{CARD_NAME}"))
