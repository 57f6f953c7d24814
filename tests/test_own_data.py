"""A user's own data behaves as the spec says: split sizes, class names, bits and resolution.

Issue 32, item 8 ("silent surprises with a user's own data"): each test fails on the code
before the fix and names what the user would otherwise not have been told.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import search_spaces
from nas.cli import main
from nas.data.datasets import SplitSizes, load_data
from nas.data.kinds import FASHION_MNIST_DIR
from nas.errors import ConfigError
from nas.spec.config import ExperimentSpec
from nas.spec.resolve import check_data_fits, resolve, spec_warnings

FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _npz(path: Path, *, n_per_class: int = 100, classes: int = 4, side: int = 8) -> Path:
    """An ``.npz`` of ``classes × n_per_class`` grey ``side×side`` images."""
    rng = np.random.default_rng(0)
    x = rng.random((classes * n_per_class, side, side)).astype(np.float32)
    np.savez(path, x=x, y=np.repeat(np.arange(classes), n_per_class))
    return path


def _folder(root: Path, *, classes: tuple[str, ...] = ("dog", "cat"), n: int = 30) -> Path:
    """``root/<class>/<i>.png`` grey 10×10 images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((10, 10)) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _spec(tmp_path: Path, data: str, *, space: str = "", extra: str = "") -> ExperimentSpec:
    """A tiny_cnn spec on one fp32 target, with the given ``[data]`` and ``[space]`` bodies."""
    return ExperimentSpec.from_toml_text(
        f'name = "own"\noutput_dir = "{tmp_path / "out"}"\n'
        f'[space]\nname = "tiny_cnn"\n{space}\n[data]\n{data}\n{extra}'
    )


# -- finding 1: split sizes apply to every kind ------------------------------------------------
def test_split_sizes_apply_to_npz_data(tmp_path: Path) -> None:
    path = _npz(tmp_path / "mine.npz")
    spec = _spec(tmp_path, f'kind = "npz"\npath = "{path}"\nval_size = 80\ncalib_size = 40')
    data = load_data("npz", path=str(path), sizes=spec.data.split_sizes())
    assert data.sizes() == {"train": 220, "calib": 40, "val": 80, "test": 60}
    spec = _spec(tmp_path, f'kind = "npz"\npath = "{path}"\ntrain_size = 100')
    assert load_data("npz", path=str(path), sizes=spec.data.split_sizes()).sizes()["train"] == 100


def test_split_sizes_apply_to_folder_and_digits_data(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images")
    folder = load_data("folder", path=str(root), resolution=8, sizes=SplitSizes(val=12, calib=6))
    assert folder.sizes() == {"train": 33, "calib": 6, "val": 12, "test": 9}
    digits = load_data("digits", sizes=SplitSizes(val=500))
    assert digits.sizes()["val"] == 500 and digits.sizes()["test"] == 270


def test_unset_sizes_keep_the_default_shares(tmp_path: Path) -> None:
    path = _npz(tmp_path / "mine.npz")
    spec = _spec(tmp_path, f'kind = "npz"\npath = "{path}"')
    assert spec.data.val_size is None and spec.data.calib_size is None
    data = load_data("npz", path=str(path), sizes=spec.data.split_sizes())
    # the 60/10/15/15 shares as scikit-learn always rounded them (val: ceil(340 * 0.15 / 0.85))
    assert data.sizes() == {"train": 239, "calib": 40, "val": 61, "test": 60}
    assert load_data("digits").sizes() == {"train": 1077, "calib": 180, "val": 270, "test": 270}
    fashion = ExperimentSpec.from_toml_text('[data]\nkind = "fashion_mnist"')
    assert (fashion.data.val_size, fashion.data.calib_size) == (5000, 1000)


def test_sizes_that_do_not_fit_are_refused_naming_the_keys(tmp_path: Path) -> None:
    path = _npz(tmp_path / "mine.npz")
    spec = _spec(tmp_path, f'kind = "npz"\npath = "{path}"\nval_size = 500')
    with pytest.raises(ConfigError, match=r"data\.val_size=500 .* exceed the 340 images"):
        load_data("npz", path=str(path), sizes=spec.data.split_sizes())
    digits = tmp_path / "digits.toml"
    digits.write_text(
        f'output_dir = "{tmp_path / "d"}"\n[data]\nkind = "digits"\nval_size = 2000\n'
    )
    assert main(["validate", str(digits)]) == 2


# -- finding 2: class names reach the data, the card and the ONNX metadata ---------------------
def test_loaded_data_carry_their_class_names(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", classes=("zebra", "ant"))
    assert load_data("folder", path=str(root), resolution=8).class_names == ("ant", "zebra")
    assert load_data("digits").class_names == tuple(str(d) for d in range(10))
    path = tmp_path / "named.npz"
    np.savez(
        path,
        x=np.random.default_rng(0).random((80, 8, 8)),
        y=np.repeat(np.arange(2), 40),
        class_names=np.array(["no", "yes"]),
    )
    assert load_data("npz", path=str(path)).class_names == ("no", "yes")
    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        fashion = load_data("fashion_mnist", sizes=SplitSizes(val=100, calib=100, train=100))
        assert fashion.class_names == FASHION_NAMES


def test_exported_card_and_onnx_metadata_name_the_classes(tmp_path: Path) -> None:
    import onnx

    from nas.artifacts.export import export_subnet, read_card
    from nas.supernets.base import Supernet

    root = _folder(tmp_path / "images", classes=("cat", "dog"))
    data = load_data("folder", path=str(root), resolution=8, sizes=SplitSizes(val=12, calib=6))
    space = search_spaces.get("tiny_cnn", in_channels=3, num_classes=2, bits=(32,))
    torch.manual_seed(0)
    out = export_subnet(
        Supernet(space).eval(),
        space.smallest(),
        tmp_path / "sub",
        preprocessing=data.preprocessing.to_dict(),
        class_names=data.class_names,
    )
    assert read_card(out.path)["class_names"] == ["cat", "dog"]
    props = {p.key: p.value for p in onnx.load(str(out.path / "model.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == ["cat", "dog"]


# -- finding 3: low bits searched with nothing to gain from them -------------------------------
def test_low_bits_on_fp32_targets_without_a_size_objective_warn(tmp_path: Path) -> None:
    (line,) = spec_warnings(resolve(_spec(tmp_path, 'kind = "digits"')))
    assert "searches bits [4, 8]" in line and "model_size_bytes" in line and "\n" not in line
    quiet = [
        _spec(tmp_path, 'kind = "digits"', space="options = { bits = [32] }"),
        _spec(
            tmp_path,
            'kind = "digits"',
            extra='[search]\nobjectives = ["top1:max", "model_size_bytes:min"]',
        ),
        _spec(
            tmp_path,
            'kind = "digits"',
            extra='[measure]\ntargets = ["cpu_int8"]\n'
            '[search]\nobjectives = ["top1:max", "latency_ms@cpu_int8:min"]',
        ),
    ]
    for spec in quiet:
        assert spec_warnings(resolve(spec)) == []


def test_validate_prints_the_bits_warning_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bits.toml"
    path.write_text(f'output_dir = "{tmp_path / "out"}"\n[space]\nname = "tiny_cnn"\n')
    path.write_text(path.read_text() + '[data]\nkind = "digits"\n')
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "space.options.bits = [32]" in lines[0], err


# -- finding 4: which resolution wins ----------------------------------------------------------
def test_a_folder_resolution_that_conflicts_with_the_space_is_refused(tmp_path: Path) -> None:
    data = f'kind = "folder"\npath = "{tmp_path}"\nresolution = 16'
    with pytest.raises(
        ConfigError, match=r"data\.resolution=16 .* space\.options\.resolution=8 of search space"
    ):
        resolve(_spec(tmp_path, data, space="options = { bits = [32] }"))
    resolve(_spec(tmp_path, data, space="options = { bits = [32], resolution = 16 }"))
    resolve(_spec(tmp_path, data, space="options = { bits = [32], resolutions = [6, 8] }"))


def test_npz_images_at_another_side_than_the_space_are_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path / "big.npz", side=16)
    data = load_data("npz", path=str(path))
    space = search_spaces.get("tiny_cnn")
    with pytest.raises(ConfigError, match=r"holds 16×16 images .* runs at resolution 8"):
        check_data_fits(space, data, kind="npz")
    check_data_fits(search_spaces.get("tiny_cnn", resolution=16), data, kind="npz")
    check_data_fits(space, data)  # the built-in kinds keep their old behaviour
