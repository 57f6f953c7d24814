"""Export Pareto-front subnets as self-describing directories, and load them back.

Each subnet directory holds ``model.safetensors`` (the static module's weights), ``model.onnx``
and ``model_card.json`` (config, search space, measured and predicted metrics with their
targets, preprocessing, class names, supernet checkpoint hash, seed, library versions; the class
names also in the ONNX ``metadata_props``). Loading rebuilds the
static module from the card and the space, so no code object is ever unpickled.

Loading refuses, naming the file: pickle-like files in the directory and card paths outside it
(:class:`~nas.errors.UnsafeFileError`); a card or weights file that is malformed, truncated, of
another version, of the wrong shapes or not matching the card's sha256
(:class:`~nas.errors.IncompatibleArtifactError`). The sha256 is the card's own, so it detects a
damaged or swapped weights file, not a card rewritten together with its weights.

The ONNX graph starts with the data set's normalisation, so a deployment feeds it raw pixels in
the card's ``preprocessing.raw_range``; :func:`load_exported` gives the torch module either way.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

import search_spaces
from nas.artifacts.safe_files import (  # write_bytes_atomic: re-exported
    HEAD_BYTES,
    looks_like_pickle,
    read_json_object,
    refuse_unsafe_files,
    require,
    require_sha256,
    resolve_inside,
    write_bytes_atomic,
)
from nas.data.resolution import config_resolution, has_resolution, interpolate
from nas.errors import (
    ConfigError,
    IncompatibleArtifactError,
    MissingArtifactError,
    UnsafeFileError,
)
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
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    write_bytes_atomic(path, text.encode("utf-8"))


# -- safetensors ----------------------------------------------------------------------------------
SAFETENSORS_DTYPES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
"""Element sizes of the dtypes a safetensors header may declare."""


def check_safetensors_layout(data: bytes, path: Path) -> None:
    """Raise :class:`IncompatibleArtifactError` unless ``data`` is a complete safetensors file.

    The header must be a JSON object whose tensors (known dtype, non-negative shape) tile the
    data section exactly, so a truncated or padded file is caught before the library sees it.
    """
    if len(data) < 8:
        raise IncompatibleArtifactError(
            f"{path} is {len(data)} bytes, too short for a safetensors header (truncated?)"
        )
    size = int.from_bytes(data[:8], "little")
    if size == 0 or 8 + size > len(data):
        raise IncompatibleArtifactError(
            f"{path}: the safetensors header claims {size} bytes but the file holds "
            f"{len(data) - 8} after the length field (truncated or not safetensors)"
        )
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IncompatibleArtifactError(
            f"{path}: the safetensors header is not a JSON object ({exc})"
        ) from exc
    if not isinstance(header, dict):
        raise IncompatibleArtifactError(f"{path}: the safetensors header is not a JSON object")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise IncompatibleArtifactError(
                    f"{path}: safetensors __metadata__ must map names to strings"
                )
            continue
        ok = (
            isinstance(entry, dict)
            and entry.get("dtype") in SAFETENSORS_DTYPES
            and isinstance(entry.get("shape"), list)
            and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"]
            )
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in entry["data_offsets"])
        )
        if not ok:
            raise IncompatibleArtifactError(
                f"{path}: safetensors header entry {name!r} needs a known dtype, a shape of "
                f"non-negative integers and two data_offsets, got {entry!r:.120}"
            )
        begin, end = entry["data_offsets"]
        expected = math.prod(entry["shape"]) * SAFETENSORS_DTYPES[entry["dtype"]]
        if begin < 0 or end - begin != expected:
            raise IncompatibleArtifactError(
                f"{path}: tensor {name!r} ({entry['dtype']}, shape {entry['shape']}) needs "
                f"{expected} bytes, its data_offsets {entry['data_offsets']} span {end - begin}"
            )
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise IncompatibleArtifactError(
                f"{path}: tensor {name!r} starts at byte {begin} of the data, expected {position}"
            )
        position = end
    available = len(data) - 8 - size
    if position != available:
        raise IncompatibleArtifactError(
            f"{path}: the header describes {position} bytes of tensor data, the file holds "
            f"{available} ({'truncated' if available < position else 'trailing bytes'})"
        )


def read_safetensors(path: Path, *, sha256: str | None = None) -> dict[str, Tensor]:
    """Tensors of a safetensors file, after checking it is no pickle, complete and unchanged.

    Args:
        path: The file (already resolved inside its artifact directory).
        sha256: If given, the digest the file must have.

    Raises:
        UnsafeFileError: the file is a pickle (or a torch.save zip of pickles).
        IncompatibleArtifactError: missing, truncated, a malformed header, or another sha256.
    """
    if not path.is_file():
        raise IncompatibleArtifactError(f"{path} is missing: not a complete artifact")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IncompatibleArtifactError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if data[:4] == b"PK\x03\x04" or looks_like_pickle(data[:HEAD_BYTES], complete=False):
        raise UnsafeFileError(
            f"{path} is a pickle, not safetensors; weights are loaded from safetensors only and "
            "pickles are never unpickled (re-save them with safetensors.torch.save_file)"
        )
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IncompatibleArtifactError(
            f"{path}: sha256 {hashlib.sha256(data).hexdigest()} differs from the recorded "
            f"{sha256} (damaged or replaced)"
        )
    check_safetensors_layout(data, path)
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # the Rust reader reports malformed files as SafetensorError
        raise IncompatibleArtifactError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})"
        ) from exc


def load_tensors_into(module: nn.Module, tensors: Mapping[str, Tensor], *, file: Path) -> None:
    """``module.load_state_dict(tensors, strict=True)``, naming the tensor that does not fit.

    Raises:
        IncompatibleArtifactError: missing or unexpected tensors, or a shape or dtype that
            differs from the module's.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise IncompatibleArtifactError(
            f"{file}: tensors do not match the module: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in tensors.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape) or tensor.dtype != want.dtype:
            raise IncompatibleArtifactError(
                f"{file}: tensor {name!r} is {tensor.dtype} {list(tensor.shape)}, the module "
                f"expects {want.dtype} {list(want.shape)}"
            )
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise IncompatibleArtifactError(f"{file}: tensors do not load: {exc}") from exc


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

    mean: torch.Tensor  # buffers (register_buffer in __init__)
    inv_std: torch.Tensor

    def __init__(
        self, model: nn.Module, preprocessing: Mapping[str, Any], *, side: int | None = None
    ) -> None:
        super().__init__()
        self.model = model
        # a subnet of an elastic-resolution space sees images resized to its own side
        size = preprocessing.get("size")
        self.side = side if side is not None and side != size else None
        mean = torch.tensor([float(v) for v in preprocessing["mean"]]).view(1, -1, 1, 1)
        std = torch.tensor([float(v) for v in preprocessing["std"]]).view(1, -1, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", 1.0 / std)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x = (raw - self.mean) * self.inv_std
        if self.side is not None:
            x = interpolate(x, self.side)
        return self.model(x)


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
    class_names: Sequence[str] | None = None,
) -> ExportedSubnet:
    """Write one subnet directory. ``measured``/``predicted`` keys are ``metric@target`` names.

    With ``preprocessing`` (:meth:`nas.data.datasets.Preprocessing.to_dict`), the card records it
    and the ONNX graph takes raw pixels; without it, the graph takes normalised inputs.
    ``class_names[i]`` names output ``i``: the card's ``class_names`` and the ONNX
    ``metadata_props`` key ``class_names`` (a JSON list) carry it, so a deployed model's outputs
    map back to labels.
    """
    from nas.supernets.base import Supernet

    if not isinstance(supernet, Supernet):
        raise TypeError("export_subnet needs a nas.supernets.base.Supernet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = supernet.export(config).eval()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    weights = safetensors.torch.save(state, metadata={"format": "nas-subnet"})
    write_bytes_atomic(out / WEIGHTS_NAME, weights)
    space = supernet.space
    subnet_shape = supernet.input_shape(1, config)
    side = subnet_shape[-1] if has_resolution(space) else None
    input_shape = subnet_shape
    if preprocessing is not None and preprocessing.get("size") is not None:
        size = int(preprocessing["size"])  # the raw images' side: the graph resizes them
        input_shape = (1, subnet_shape[1], size, size)
    if onnx:
        from nas.deploy.onnx_export import export_module_onnx

        graph = (
            module if preprocessing is None else RawPixelModel(module, preprocessing, side=side)
        )
        export_module_onnx(
            graph.eval(), input_shape, out / ONNX_NAME, metadata=onnx_metadata(class_names)
        )
    card = {
        "card_version": CARD_VERSION,
        "config": config.to_dict(),
        "config_key": config.key,
        "search_space": search_spaces.describe(space),
        "input_shape": list(input_shape),
        "subnet_input_shape": list(subnet_shape),
        "preprocessing": dict(preprocessing) if preprocessing is not None else None,
        "onnx_input": "raw pixels" if preprocessing is not None else "normalised",
        "class_names": list(class_names) if class_names is not None else None,
        "metrics": {
            "measured": dict(measured or {}),
            "predicted": dict(predicted or {}),
        },
        "files": {"weights": WEIGHTS_NAME, "onnx": ONNX_NAME if onnx else None},
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "versions": library_versions(),
        **dict(extra or {}),
    }
    write_json_atomic(out / CARD_NAME, card)
    return ExportedSubnet(out, config, card)


def onnx_metadata(class_names: Sequence[str] | None) -> dict[str, str]:
    """The ONNX ``metadata_props`` of an exported subnet: its class names, where known."""
    if class_names is None:
        return {}
    return {"class_names": json.dumps(list(class_names), ensure_ascii=False)}


EXPORT_LOADS = f"{WEIGHTS_NAME}, {ONNX_NAME} and {CARD_NAME}"


def _checked_card(path: Path) -> tuple[dict[str, Any], Path]:
    """The validated card of an exported subnet directory and its resolved weights file."""
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        kind = "a pickle" if looks_like_pickle(head, complete=False) else "a file"
        error = UnsafeFileError if kind == "a pickle" else IncompatibleArtifactError
        raise error(f"{path} is {kind}, not an exported subnet directory with {CARD_NAME}")
    card_path = path / CARD_NAME
    if not card_path.is_file():
        raise MissingArtifactError(f"{path} is not an exported subnet: {CARD_NAME} is missing")
    refuse_unsafe_files(path, loads=EXPORT_LOADS)
    card = read_json_object(card_path, what="model card")
    version = require(card, "card_version", int, file=card_path)
    if version != CARD_VERSION:
        raise IncompatibleArtifactError(
            f"{card_path}: card_version={version!r} is not one of [{CARD_VERSION}]"
        )
    require(card, "config", dict, file=card_path)
    described = require(card, "search_space", dict, file=card_path)
    require(described, "name", str, file=card_path, prefix="search_space.")
    require(described, "options", dict, file=card_path, prefix="search_space.")
    require(described, "fingerprint", str, file=card_path, prefix="search_space.")
    require_sha256(card, "weights_sha256", file=card_path)
    files = require(card, "files", dict, file=card_path)
    weights = resolve_inside(
        path,
        require(files, "weights", str, file=card_path, prefix="files."),
        file=card_path,
        key="files.weights",
    )
    onnx = require(files, "onnx", (str, type(None)), file=card_path, prefix="files.")
    if onnx is not None:
        resolve_inside(path, onnx, file=card_path, key="files.onnx")
    preprocessing = require(card, "preprocessing", (dict, type(None)), file=card_path)
    if preprocessing is not None:
        _check_preprocessing(preprocessing, file=card_path)
    names = card.get("class_names")  # absent from cards written before it was recorded
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise IncompatibleArtifactError(
            f"{card_path}: class_names must be a list of strings or null, got {names!r:.80}"
        )
    return card, weights


def _check_preprocessing(preprocessing: Mapping[str, Any], *, file: Path) -> None:
    lists = [
        require(preprocessing, key, list, file=file, prefix="preprocessing.")
        for key in ("mean", "std")
    ]
    numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for values in lists
        for v in values
    )
    if not numbers or not lists[0] or len(lists[0]) != len(lists[1]):
        raise IncompatibleArtifactError(
            f"{file}: preprocessing.mean and .std must be equally long lists of finite numbers"
        )
    if any(v <= 0 for v in lists[1]):
        raise IncompatibleArtifactError(f"{file}: preprocessing.std must be positive")


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of an exported subnet directory, checked as :func:`load_exported` does.

    Raises:
        UnsafeFileError: pickle-like files in the directory, or card paths outside it.
        IncompatibleArtifactError: a card that is malformed, of another version or lacks a field
            (:class:`~nas.errors.MissingArtifactError` when there is no card at all).
    """
    card, _ = _checked_card(Path(path))
    return card


def load_exported(path: str | Path, *, raw_input: bool = False) -> nn.Module:
    """Rebuild an exported subnet as a static module with its weights (eval mode).

    With ``raw_input``, the module takes raw pixels like the ONNX graph (the card's
    preprocessing applied inside); otherwise it takes normalised inputs.

    Raises:
        UnsafeFileError: pickle-like files in the directory, or card paths outside it.
        IncompatibleArtifactError: a malformed card or weights file, a sha256 that differs from
            the card's, tensors that do not fit, or a search space that no longer matches.
    """
    from nas.supernets import family_of

    path = Path(path)
    card, weights = _checked_card(path)
    card_path = path / CARD_NAME
    try:
        space = search_spaces.rebuild(card["search_space"], artifact=str(card_path))
        config = space.validate(card["config"])
    except IncompatibleArtifactError:
        raise
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise IncompatibleArtifactError(
            f"{card_path}: search_space/config do not rebuild a subnet: {exc}"
        ) from exc
    with torch.device("meta"):
        # what Supernet(space) builds, typed as the family's class
        skeleton = family_of(space).supernet_class(space)
    module = skeleton.to_empty(device="cpu").export(config)
    tensors = read_safetensors(weights, sha256=card["weights_sha256"])
    load_tensors_into(module, tensors, file=weights)
    if raw_input:
        if not card.get("preprocessing"):
            raise IncompatibleArtifactError(
                f"{path}: the model card records no preprocessing, so raw_input is unavailable"
            )
        side = config_resolution(space, config, 0) if has_resolution(space) else None
        return RawPixelModel(module, card["preprocessing"], side=side).eval()
    return module.eval()


def exported_paths(root: str | Path) -> Sequence[Path]:
    """Exported subnet directories below ``root``, sorted."""
    return sorted(p.parent for p in Path(root).glob(f"*/{CARD_NAME}"))
