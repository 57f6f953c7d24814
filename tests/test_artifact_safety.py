"""Crafted bad artifacts: each loader refuses each with UnsafeFileError/IncompatibleArtifactError.

Valid artifacts (a predictor, a bundle, a checkpoint, an exported subnet) are made once with the
project's own save functions; each case copies one, damages it in one way and checks the real
loader's error class and that the message names the file. Pickle payloads would create a marker
file if they ever ran; every case asserts the marker does not exist.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import skops.io as sio
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import search_spaces
from nas.artifacts.export import CARD_NAME, WEIGHTS_NAME, export_subnet, load_exported
from nas.errors import IncompatibleArtifactError, UnsafeFileError
from nas.measure.cost import compute_cost
from nas.space import SearchSpace
from nas.supernets.base import Supernet
from nas.training.checkpoint import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    latest_checkpoint,
    load_checkpoint,
    load_supernet,
    save_checkpoint,
)
from predictors.bundle import ARCHIVE_FILE, BUNDLE_FILE, Predictors, build_archive
from predictors.dataset import fit_predictor
from predictors.persistence import MANIFEST_FILE, load_predictor, save_predictor
from predictors.persistence import MODEL_FILE as SKOPS_FILE

REPO = Path(__file__).resolve().parents[1]


# -- valid artifacts, built once ------------------------------------------------------------------
def _small_supernet() -> tuple[SearchSpace, Supernet, torch.optim.Optimizer]:
    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    model = Supernet(space)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, *model.input_shape()[1:])
    model(x, space.largest()).sum().backward()
    optimizer.step()
    return space, model, optimizer


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("valid")
    space = search_spaces.get("tiny_cnn")
    configs = space.sample_many(60, np.random.default_rng(0))
    macs = np.array([compute_cost(space, c).macs for c in configs], dtype=float)
    top1 = fit_predictor(space, configs, 80 + np.log(macs), metric="top1", kind="ridge")
    latency = fit_predictor(
        space, configs, macs / 1e5, metric="latency_ms", target="cpu", kind="ridge"
    )
    save_predictor(top1.predictor, root / "predictor")
    bundle = Predictors([top1.predictor, latency.predictor])
    archive = build_archive(bundle, space.sample_many(40, np.random.default_rng(1)))
    Predictors([top1.predictor, latency.predictor], archive=archive).save(root / "bundle")

    space, model, optimizer = _small_supernet()
    save_checkpoint(
        root / "checkpoint",
        model=model,
        space=space,
        epoch=1,
        global_step=1,
        train_config={"epochs": 2},
        optimizer=optimizer,
    )
    export_subnet(
        model,
        space.smallest(),
        root / "export",
        onnx=False,
        preprocessing={"mean": [0.5], "std": [0.25], "raw_range": [0, 255]},
    )
    return {k: root / k for k in ("predictor", "bundle", "checkpoint", "export")}


LOADERS: dict[str, Callable[[Path], object]] = {
    "predictor": load_predictor,
    "bundle": Predictors.load,
    "checkpoint": load_supernet,
    "export": load_exported,
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_the_valid_artifacts_load(kind: str, artifacts: dict[str, Path], tmp_path: Path) -> None:
    copy = shutil.copytree(artifacts[kind], tmp_path / "artifact", symlinks=True)
    assert LOADERS[kind](copy) is not None


# -- payloads and editing helpers -----------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``touch marker``: a file that proves the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def protocol0_exploit(marker: Path) -> bytes:
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def binary_exploit(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=4)


def object_npy(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reseal_checkpoint(d: Path) -> None:
    """Record the current tensor files in state.json, so only the crafted damage remains."""

    def change(state: dict) -> None:
        for role, name in (("model", MODEL_FILE), ("optimizer", OPTIMIZER_FILE)):
            state["files"][role].update(sha256=sha256(d / name), size=(d / name).stat().st_size)

    edit_json(d / STATE_FILE, change)


def reseal_card(d: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c.update(weights_sha256=sha256(d / WEIGHTS_NAME)))


def reseal_predictor(d: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m.update(model_sha256=sha256(d / SKOPS_FILE)))


def rewrite_header(path: Path, change: Callable[[dict], object]) -> None:
    """Rewrite a safetensors header (JSON) and keep the tensor data."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])


def reshape_first_tensor(path: Path) -> str:
    tensors = safetensors.torch.load(path.read_bytes())
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() >= 1)
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:])
    path.write_bytes(safetensors.torch.save(tensors))
    return name


def swap_for_symlink(link: Path, outside: Path) -> None:
    if link.is_dir():
        shutil.copytree(link, outside)
        shutil.rmtree(link)
    else:
        shutil.copyfile(link, outside)
        link.unlink()
    link.symlink_to(outside)


# -- the crafted cases ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    kind: str
    error: type[Exception]
    names: str
    craft: Callable[[Path, Path], object]


CASES: dict[str, Case] = {}


def case(kind: str, error: type[Exception], names: str) -> Callable:
    """Register ``craft(artifact_dir, marker)``; the message must contain ``names``."""

    def register(craft: Callable[[Path, Path], object]) -> Callable[[Path, Path], object]:
        CASES[craft.__name__] = Case(kind, error, names, craft)
        return craft

    return register


UNSAFE, BAD = UnsafeFileError, IncompatibleArtifactError


# bundle.json and the Pareto archive
@case("bundle", UNSAFE, "predictors[0]='../outside'")
def bundle_predictor_dotdot(d: Path, marker: Path) -> None:
    shutil.copytree(d / "top1", d.parent / "outside")  # would load if the path were followed
    edit_json(d / BUNDLE_FILE, lambda b: b["predictors"].__setitem__(0, "../outside"))


@case("bundle", UNSAFE, "is an absolute path")
def bundle_predictor_absolute(d: Path, marker: Path) -> None:
    outside = shutil.copytree(d / "top1", d.parent / "outside")
    edit_json(d / BUNDLE_FILE, lambda b: b["predictors"].__setitem__(0, str(outside)))


@case("bundle", UNSAFE, "predictors[0]='top1' resolves to")
def bundle_predictor_symlink(d: Path, marker: Path) -> None:
    swap_for_symlink(d / "top1", d.parent / "outside")


@case("bundle", UNSAFE, "archive='/etc/passwd' is an absolute path")
def bundle_archive_absolute(d: Path, marker: Path) -> None:
    edit_json(d / BUNDLE_FILE, lambda b: b.update(archive="/etc/passwd"))


@case("bundle", UNSAFE, "archive='../pareto.jsonl'")
def bundle_archive_dotdot(d: Path, marker: Path) -> None:
    shutil.copyfile(d / ARCHIVE_FILE, d.parent / ARCHIVE_FILE)
    edit_json(d / BUNDLE_FILE, lambda b: b.update(archive=f"../{ARCHIVE_FILE}"))


@case("bundle", UNSAFE, "archive='pareto.jsonl' resolves to")
def bundle_archive_symlink(d: Path, marker: Path) -> None:
    swap_for_symlink(d / ARCHIVE_FILE, d.parent / "outside.jsonl")


@case("bundle", BAD, "bundle.json is not valid JSON")
def bundle_json_truncated(d: Path, marker: Path) -> None:
    truncate(d / BUNDLE_FILE)


@case("bundle", BAD, "bundle.json is not UTF-8")
def bundle_json_not_utf8(d: Path, marker: Path) -> None:
    (d / BUNDLE_FILE).write_bytes(b'{"format": "nas-predictors\xff\xfe"}')


@case("bundle", BAD, "bundle.json: key 'predictors' is missing")
def bundle_json_missing_predictors(d: Path, marker: Path) -> None:
    edit_json(d / BUNDLE_FILE, lambda b: b.pop("predictors"))


@case("bundle", BAD, "bundle.json: predictors must be a list, got str")
def bundle_json_predictors_wrong_type(d: Path, marker: Path) -> None:
    edit_json(d / BUNDLE_FILE, lambda b: b.update(predictors="top1"))


@case("bundle", BAD, "bundle.json: format_version=2 is not one of [1]")
def bundle_json_version_mismatch(d: Path, marker: Path) -> None:
    edit_json(d / BUNDLE_FILE, lambda b: b.update(format_version=2))


@case("bundle", UNSAFE, "archive.pt looks like a pickle")
def bundle_pickle_named_pt(d: Path, marker: Path) -> None:
    (d / "archive.pt").write_bytes(binary_exploit(marker))


@case("bundle", UNSAFE, "notes.txt is a pickle")
def bundle_pickle_named_txt(d: Path, marker: Path) -> None:
    (d / "notes.txt").write_bytes(protocol0_exploit(marker))


@case("bundle", BAD, "pareto.jsonl:")
def bundle_archive_truncated_line(d: Path, marker: Path) -> None:
    data = (d / ARCHIVE_FILE).read_bytes()
    (d / ARCHIVE_FILE).write_bytes(data[: data.index(b"\n") + 20])


@case("bundle", BAD, "pareto.jsonl: archive[0] must have exactly the keys")
def bundle_archive_record_missing_metrics(d: Path, marker: Path) -> None:
    (d / ARCHIVE_FILE).write_text(json.dumps({"config": {}}) + "\n")


@case("bundle", BAD, "lists it as 'latency_ms@cpu'")
def bundle_predictor_swapped(d: Path, marker: Path) -> None:
    shutil.rmtree(d / "latency_ms@cpu")
    shutil.copytree(d / "top1", d / "latency_ms@cpu")


# a saved predictor
@case("predictor", UNSAFE, "model_file='../model.skops'")
def predictor_model_file_dotdot(d: Path, marker: Path) -> None:
    shutil.copyfile(d / SKOPS_FILE, d.parent / SKOPS_FILE)
    edit_json(d / MANIFEST_FILE, lambda m: m.update(model_file=f"../{SKOPS_FILE}"))


@case("predictor", UNSAFE, "is an absolute path")
def predictor_model_file_absolute(d: Path, marker: Path) -> None:
    outside = shutil.copyfile(d / SKOPS_FILE, d.parent / SKOPS_FILE)
    edit_json(d / MANIFEST_FILE, lambda m: m.update(model_file=str(outside)))


@case("predictor", UNSAFE, "model_file='model.skops' resolves to")
def predictor_model_symlink(d: Path, marker: Path) -> None:
    swap_for_symlink(d / SKOPS_FILE, d.parent / "outside.skops")


@case("predictor", BAD, "manifest.json is not valid JSON")
def predictor_manifest_truncated(d: Path, marker: Path) -> None:
    truncate(d / MANIFEST_FILE, 0.9)


@case("predictor", BAD, "manifest.json is not UTF-8")
def predictor_manifest_not_utf8(d: Path, marker: Path) -> None:
    (d / MANIFEST_FILE).write_bytes(b"\xff\xfe{}")


@case("predictor", BAD, "manifest.json: key 'model_sha256' is missing")
def predictor_manifest_missing_sha(d: Path, marker: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m.pop("model_sha256"))


@case("predictor", BAD, "manifest.json: metric must be a string, got int")
def predictor_manifest_wrong_type(d: Path, marker: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m.update(metric=5))


@case("predictor", BAD, "manifest.json: space.dims[0].options is empty")
def predictor_manifest_empty_options(d: Path, marker: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m["space"]["dims"][0].update(options=[]))


@case("predictor", BAD, "scikit-learn saved with 0.24.2")
def predictor_library_version_mismatch(d: Path, marker: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m["versions"].update({"scikit-learn": "0.24.2"}))


@case("predictor", BAD, "manifest.json: format_version=2 is not one of [1]")
def predictor_format_version_mismatch(d: Path, marker: Path) -> None:
    edit_json(d / MANIFEST_FILE, lambda m: m.update(format_version=2))


@case("predictor", BAD, "model.skops is a damaged skops archive")
def predictor_skops_corrupted_member(d: Path, marker: Path) -> None:
    path = d / SKOPS_FILE
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("schema.json")
    local = info.header_offset  # the local header's own name and extra lengths
    start = local + 30 + int.from_bytes(data[local + 26 : local + 28], "little")
    start += int.from_bytes(data[local + 28 : local + 30], "little")
    for i in range(start + 8, start + info.compress_size - 8, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    reseal_predictor(d)


@case("predictor", UNSAFE, "model.skops contains untrusted types")
def predictor_skops_untrusted_type(d: Path, marker: Path) -> None:
    sio.dump(Pipeline([("run", FunctionTransformer(os.system))]), d / SKOPS_FILE)
    reseal_predictor(d)


@case("predictor", UNSAFE, "model.skops is a pickle (a zip holding 'evil.npy'")
def predictor_skops_object_array(d: Path, marker: Path) -> None:
    with zipfile.ZipFile(d / SKOPS_FILE, "a") as archive:
        archive.writestr("evil.npy", object_npy(marker))
    reseal_predictor(d)


@case("predictor", UNSAFE, "model.pkl looks like a pickle")
def predictor_pickle_named_pkl(d: Path, marker: Path) -> None:
    (d / "model.pkl").write_bytes(binary_exploit(marker))


@case("predictor", UNSAFE, "model.skops is a pickle")
def predictor_model_is_protocol0_pickle(d: Path, marker: Path) -> None:
    (d / SKOPS_FILE).write_bytes(protocol0_exploit(marker))


@case("predictor", UNSAFE, "features.npz is a pickle")
def predictor_npz_object_array(d: Path, marker: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([_Payload(marker)], dtype=object))
    (d / "features.npz").write_bytes(buffer.getvalue())


# a training checkpoint
@case("checkpoint", UNSAFE, "files.model.path='../model.safetensors'")
def checkpoint_manifest_dotdot(d: Path, marker: Path) -> None:
    shutil.copyfile(d / MODEL_FILE, d.parent / MODEL_FILE)
    edit_json(d / STATE_FILE, lambda s: s["files"]["model"].update(path=f"../{MODEL_FILE}"))


@case("checkpoint", UNSAFE, "is an absolute path")
def checkpoint_manifest_absolute(d: Path, marker: Path) -> None:
    outside = shutil.copyfile(d / OPTIMIZER_FILE, d.parent / OPTIMIZER_FILE)
    edit_json(d / STATE_FILE, lambda s: s["files"]["optimizer"].update(path=str(outside)))


@case("checkpoint", UNSAFE, "files.model.path='model.safetensors' resolves to")
def checkpoint_model_symlink(d: Path, marker: Path) -> None:
    swap_for_symlink(d / MODEL_FILE, d.parent / "outside.safetensors")


@case("checkpoint", BAD, "state.json is not valid JSON")
def checkpoint_state_truncated(d: Path, marker: Path) -> None:
    truncate(d / STATE_FILE)


@case("checkpoint", BAD, "state.json is not UTF-8")
def checkpoint_state_not_utf8(d: Path, marker: Path) -> None:
    (d / STATE_FILE).write_bytes((d / STATE_FILE).read_bytes().replace(b'"epoch"', b'"\xe9poch"'))


@case("checkpoint", BAD, "state.json: key 'epoch' is missing")
def checkpoint_missing_epoch(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: s.pop("epoch"))


@case("checkpoint", BAD, "state.json: epoch=-5 must be a non-negative integer")
def checkpoint_negative_epoch(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: s.update(epoch=-5))


@case("checkpoint", BAD, "state.json: epoch must be an integer, got str")
def checkpoint_epoch_wrong_type(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: s.update(epoch="3"))


@case("checkpoint", BAD, "state.json: global_step must be an integer, got bool")
def checkpoint_step_is_bool(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: s.update(global_step=True))


@case("checkpoint", BAD, "state.json: format_version=99 is not one of [1, 2]")
def checkpoint_version_mismatch(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: s.update(format_version=99))


@case("checkpoint", BAD, "model.safetensors is")
def checkpoint_truncated_model(d: Path, marker: Path) -> None:
    truncate(d / MODEL_FILE)


@case("checkpoint", BAD, "model.safetensors: sha256")
def checkpoint_model_replaced_same_size(d: Path, marker: Path) -> None:
    data = bytearray((d / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (d / MODEL_FILE).write_bytes(bytes(data))


@case("checkpoint", BAD, "model.safetensors: the safetensors header claims")
def checkpoint_header_length_too_large(d: Path, marker: Path) -> None:
    data = (d / MODEL_FILE).read_bytes()
    (d / MODEL_FILE).write_bytes((1 << 40).to_bytes(8, "little") + data[8:])
    reseal_checkpoint(d)


@case("checkpoint", BAD, "optimizer.safetensors: the safetensors header is not a JSON object")
def checkpoint_header_not_json(d: Path, marker: Path) -> None:
    data = (d / OPTIMIZER_FILE).read_bytes()
    size = int.from_bytes(data[:8], "little")
    (d / OPTIMIZER_FILE).write_bytes(data[:8] + b"x" * size + data[8 + size :])
    reseal_checkpoint(d)


@case("checkpoint", BAD, "the header describes")
def checkpoint_model_trailing_bytes(d: Path, marker: Path) -> None:
    with open(d / MODEL_FILE, "ab") as fh:
        fh.write(b"\0" * 64)
    reseal_checkpoint(d)


@case("checkpoint", BAD, "model.safetensors: tensor")
def checkpoint_wrong_shape_tensor(d: Path, marker: Path) -> None:
    reshape_first_tensor(d / MODEL_FILE)
    reseal_checkpoint(d)


@case("checkpoint", BAD, "optimizer.safetensors: tensor 'evil'")
def checkpoint_unexpected_optimizer_tensor(d: Path, marker: Path) -> None:
    tensors = safetensors.torch.load((d / OPTIMIZER_FILE).read_bytes())
    tensors["evil"] = torch.zeros(1)
    (d / OPTIMIZER_FILE).write_bytes(safetensors.torch.save(tensors))
    reseal_checkpoint(d)


@case("checkpoint", UNSAFE, "model.pt looks like a pickle")
def checkpoint_pickle_named_pt(d: Path, marker: Path) -> None:
    (d / "model.pt").write_bytes(binary_exploit(marker))


@case("checkpoint", UNSAFE, "weights.bin is a pickle")
def checkpoint_pickle_named_bin(d: Path, marker: Path) -> None:
    (d / "weights.bin").write_bytes(binary_exploit(marker))


@case("checkpoint", UNSAFE, "model.safetensors is a pickle (a zip holding the pickle")
def checkpoint_torch_save_as_safetensors(d: Path, marker: Path) -> None:
    torch.save({"payload": _Payload(marker)}, d / MODEL_FILE)
    reseal_checkpoint(d)


@case("checkpoint", BAD, "model.safetensors: the header describes")
def checkpoint_v1_truncated_model(d: Path, marker: Path) -> None:
    edit_json(d / STATE_FILE, lambda s: (s.pop("files"), s.update(format_version=1)))
    truncate(d / MODEL_FILE, 0.9)


# an exported subnet
@case("export", UNSAFE, "files.weights='../model.safetensors'")
def export_weights_dotdot(d: Path, marker: Path) -> None:
    shutil.copyfile(d / WEIGHTS_NAME, d.parent / WEIGHTS_NAME)
    edit_json(d / CARD_NAME, lambda c: c["files"].update(weights=f"../{WEIGHTS_NAME}"))


@case("export", UNSAFE, "is an absolute path")
def export_weights_absolute(d: Path, marker: Path) -> None:
    outside = shutil.copyfile(d / WEIGHTS_NAME, d.parent / WEIGHTS_NAME)
    edit_json(d / CARD_NAME, lambda c: c["files"].update(weights=str(outside)))


@case("export", UNSAFE, "files.weights='model.safetensors' resolves to")
def export_weights_symlink(d: Path, marker: Path) -> None:
    swap_for_symlink(d / WEIGHTS_NAME, d.parent / "outside.safetensors")


@case("export", UNSAFE, "files.onnx='../../model.onnx'")
def export_onnx_dotdot(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c["files"].update(onnx="../../model.onnx"))


@case("export", BAD, "model_card.json is not valid JSON")
def export_card_truncated(d: Path, marker: Path) -> None:
    truncate(d / CARD_NAME)


@case("export", BAD, "model_card.json is not UTF-8")
def export_card_not_utf8(d: Path, marker: Path) -> None:
    (d / CARD_NAME).write_bytes(b'{"card_version": 1, "\xc3\x28": 0}')


@case("export", BAD, "model_card.json: key 'files' is missing")
def export_card_missing_files(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c.pop("files"))


@case("export", BAD, "model_card.json: config must be an object, got list")
def export_card_config_wrong_type(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c.update(config=[1, 2]))


@case("export", BAD, "model_card.json: card_version=2 is not one of [1]")
def export_card_version_mismatch(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c.update(card_version=2))


@case("export", BAD, "model_card.json: search_space/config do not rebuild")
def export_card_unknown_space(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c["search_space"].update(name="no_such_space"))


@case("export", BAD, "model_card.json: preprocessing.std must be positive")
def export_card_bad_preprocessing(d: Path, marker: Path) -> None:
    edit_json(d / CARD_NAME, lambda c: c["preprocessing"].update(std=[-1.0]))


@case("export", BAD, "model.safetensors: sha256")
def export_weights_replaced(d: Path, marker: Path) -> None:
    reshape_first_tensor(d / WEIGHTS_NAME)


@case("export", BAD, "model.safetensors: tensor")
def export_wrong_shape_tensor(d: Path, marker: Path) -> None:
    reshape_first_tensor(d / WEIGHTS_NAME)
    reseal_card(d)


@case("export", BAD, "model.safetensors: safetensors header entry")
def export_header_unknown_dtype(d: Path, marker: Path) -> None:
    def change(header: dict) -> None:
        name = next(k for k in header if k != "__metadata__")
        header[name]["dtype"] = "Q99"

    rewrite_header(d / WEIGHTS_NAME, change)
    reseal_card(d)


@case("export", UNSAFE, "model.pt looks like a pickle")
def export_pickle_named_pt(d: Path, marker: Path) -> None:
    (d / "model.pt").write_bytes(protocol0_exploit(marker))


@case("export", UNSAFE, "model.onnx is a pickle")
def export_pickle_named_onnx(d: Path, marker: Path) -> None:
    (d / "model.onnx").write_bytes(binary_exploit(marker))


@case("export", UNSAFE, "stats.npy is a pickle (a numpy array of Python objects")
def export_npy_object_array(d: Path, marker: Path) -> None:
    (d / "stats.npy").write_bytes(object_npy(marker))


def test_the_payloads_run_when_unpickled(tmp_path: Path) -> None:
    """The marker check means something: each payload does run once it is unpickled."""
    loaders = {
        "protocol 0": lambda m: pickle.loads(protocol0_exploit(m)),
        "protocol 4": lambda m: pickle.loads(binary_exploit(m)),
        "object npy": lambda m: np.load(io.BytesIO(object_npy(m)), allow_pickle=True),
    }
    for name, unpickle in loaders.items():
        marker = tmp_path / name.replace(" ", "_")
        unpickle(marker)
        assert marker.exists(), name


def test_enough_cases_cover_every_loader() -> None:
    assert len(CASES) >= 40
    assert {c.kind for c in CASES.values()} == set(LOADERS)


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_artifact_is_refused(
    name: str, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    crafted = CASES[name]
    target = shutil.copytree(artifacts[crafted.kind], tmp_path / "artifact", symlinks=True)
    marker = tmp_path / "payload_ran"
    crafted.craft(target, marker)
    with pytest.raises((UnsafeFileError, IncompatibleArtifactError)) as info:
        LOADERS[crafted.kind](target)
    message = str(info.value)
    assert isinstance(info.value, crafted.error), message
    assert crafted.names in message
    assert str(target) in message or str(target.resolve()) in message, message
    assert not marker.exists(), "a pickle payload ran"


# -- checkpoints: only verified ones count, failed writes leave none ------------------------------
def _save(directory: Path, model: Supernet, space: SearchSpace, epoch: int) -> Path:
    return save_checkpoint(
        directory, model=model, space=space, epoch=epoch, global_step=epoch, train_config={}
    )


def test_latest_checkpoint_skips_a_broken_newer_one_with_one_warning(tmp_path: Path) -> None:
    space, model, _ = _small_supernet()
    for epoch in (1, 2, 3, 4):
        _save(tmp_path / f"epoch_{epoch:04d}", model, space, epoch)
    truncate(tmp_path / "epoch_0004" / MODEL_FILE)  # a full disk cut the copy short
    (tmp_path / "epoch_0003" / "model.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.warns(RuntimeWarning) as record:
        assert latest_checkpoint(tmp_path) == tmp_path / "epoch_0002"
    assert len(record) == 1
    line = str(record[0].message)
    assert "\n" not in line and "skipped 2 unverified checkpoint(s)" in line
    assert str(tmp_path / "epoch_0004" / MODEL_FILE) in line and "truncated" in line
    assert str(tmp_path / "epoch_0003" / "model.pt") in line
    assert load_checkpoint(tmp_path / "epoch_0002").epoch == 2


WRITE_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    import torch
    import search_spaces
    from nas.errors import StorageError
    from nas.supernets.base import Supernet
    from nas.training.checkpoint import save_checkpoint

    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    model = Supernet(space)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        save_checkpoint(sys.argv[1], model=model, space=space, epoch=2, global_step=2,
                        train_config={})
    except StorageError as exc:
        print(f"{exc.errno}|{exc}")
        sys.exit(3)
    """
)


def test_a_write_that_fails_leaves_the_previous_checkpoint_latest(tmp_path: Path) -> None:
    space, model, _ = _small_supernet()
    first = _save(tmp_path / "epoch_0001", model, space, 1)
    limit = (first / MODEL_FILE).stat().st_size // 3
    second = tmp_path / "epoch_0002"
    done = subprocess.run(
        [sys.executable, "-c", WRITE_UNDER_LIMIT, str(second), str(limit)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    code, message = lines[0].split("|", 1)
    assert int(code) == errno.EFBIG
    assert message == f"file too large writing {second / MODEL_FILE}"
    assert sorted(p.name for p in second.iterdir()) == []  # no temp file, no half file
    assert latest_checkpoint(tmp_path) == first
    _save(second, model, space, 2)
    assert latest_checkpoint(tmp_path) == second
    loaded, checkpoint = load_supernet(second, space=space)
    assert checkpoint.epoch == 2
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
