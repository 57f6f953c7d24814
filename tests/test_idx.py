"""The IDX reader on small crafted files: every malformed file is one clear error naming it."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from nas.data.datasets import IdxSplitSizes, load_idx_data
from nas.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_split, verify_checksums
from nas.errors import ConfigError


def _images(n: int, side: int = 4, *, magic: int = IMAGES_MAGIC) -> bytes:
    rng = np.random.default_rng(n)
    data = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
    return struct.pack(">IIII", magic, n, side, side) + data.tobytes()


def _labels(n: int, *, magic: int = LABELS_MAGIC, classes: int = 3) -> bytes:
    data = (np.arange(n) % classes).astype(np.uint8)
    return struct.pack(">II", magic, n) + data.tobytes()


def _write(directory: Path, images: bytes, labels: bytes, *, split: str = "train") -> None:
    prefix = "train" if split == "train" else "t10k"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)


def test_reads_gzip_and_plain_files(tmp_path: Path) -> None:
    _write(tmp_path, _images(12), _labels(12))
    images, labels = read_idx_split(tmp_path, "train")
    assert images.shape == (12, 4, 4) and images.dtype == np.uint8
    assert labels.tolist() == [i % 3 for i in range(12)]


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_images(3, magic=2049))
    with pytest.raises(ConfigError, match=r"x-idx3-ubyte.*magic number 2049; expected 2051"):
        read_idx(path, magic=IMAGES_MAGIC)


def test_labels_file_passed_as_images_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, _labels(5), _labels(5))
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte.gz.*expected 2051"):
        read_idx_split(tmp_path, "train")


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_truncated_data_is_refused(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "t-idx3-ubyte"
    path.write_bytes(_images(4)[:-cut])
    with pytest.raises(ConfigError, match=r"t-idx3-ubyte.*truncated"):
        read_idx(path, magic=IMAGES_MAGIC)


def test_truncated_header_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "h-idx3-ubyte"
    path.write_bytes(_images(4)[:9])
    with pytest.raises(ConfigError, match="inside its header"):
        read_idx(path, magic=IMAGES_MAGIC)
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="too short"):
        read_idx(path, magic=IMAGES_MAGIC)


def test_broken_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_images(4))[:-12])
    with pytest.raises(ConfigError, match=r"g-idx3-ubyte.gz.*gzip"):
        read_idx(path, magic=IMAGES_MAGIC)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    _write(tmp_path, _images(10), _labels(9))
    with pytest.raises(ConfigError, match="10 images but train-labels-idx1-ubyte holds 9 labels"):
        read_idx_split(tmp_path, "train")


def test_missing_file_names_what_is_missing(tmp_path: Path) -> None:
    _write(tmp_path, _images(10), _labels(10))
    with pytest.raises(ConfigError, match="lacks t10k-images-idx3-ubyte"):
        read_idx_split(tmp_path, "test")


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.gz").write_bytes(b"abc")
    with pytest.raises(ConfigError, match=r"a.gz.*SHA-256"):
        verify_checksums(tmp_path, {"a.gz": "0" * 64})
    with pytest.raises(ConfigError, match=r"b.gz.*missing"):
        verify_checksums(tmp_path, {"b.gz": "0" * 64})


def test_idx_folder_splits_and_keeps_the_official_test_set(tmp_path: Path) -> None:
    _write(tmp_path, _images(60), _labels(60))
    _write(tmp_path, _images(9), _labels(9), split="test")
    data = load_idx_data(tmp_path, sizes=IdxSplitSizes(val=12, calib=6, train=30), seed=3)
    assert data.sizes() == {"train": 30, "calib": 6, "val": 12, "test": 9}
    assert data.preprocessing is not None and data.preprocessing.raw_range == (0.0, 255.0)
    # the test split is the official file, in its order, normalised with train statistics
    raw_test = np.frombuffer(_images(9)[16:], dtype=np.uint8).reshape(9, 1, 4, 4)
    mean, std = data.preprocessing.mean[0], data.preprocessing.std[0]
    np.testing.assert_allclose(data.x["test"].numpy(), (raw_test - mean) / std, atol=1e-5)
    # same seed, same split; the held-out parts do not overlap the training part
    again = load_idx_data(tmp_path, sizes=IdxSplitSizes(val=12, calib=6, train=30), seed=3)
    np.testing.assert_array_equal(again.x["val"].numpy(), data.x["val"].numpy())
    with pytest.raises(ConfigError, match=r"data.val_size=58"):
        load_idx_data(tmp_path, sizes=IdxSplitSizes(val=58, calib=6))
