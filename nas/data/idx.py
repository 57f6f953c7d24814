"""Reader of the IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST).

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, one
32-bit size per dimension) followed by the data. Images are ``idx3`` (N×H×W, unsigned bytes,
magic 2051) and labels ``idx1`` (N, unsigned bytes, magic 2049); files may be gzip-compressed.
Every check names the file, so a truncated download or a swapped pair is one clear line.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from nas.errors import ConfigError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
UBYTE = 0x08
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"IDX file {str(path)!r} does not exist or is not a file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConfigError(f"IDX file {str(path)!r}: broken gzip stream ({exc})") from exc
    return raw


def read_idx(path: str | Path, *, magic: int) -> np.ndarray:
    """The array stored in one IDX file, checked against the expected ``magic`` number.

    Raises:
        ConfigError: missing file, bad gzip, wrong magic number or type, or fewer data bytes
            than the header declares.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ConfigError(f"IDX file {str(path)!r} is {len(raw)} bytes: too short for a header")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise ConfigError(
            f"IDX file {str(path)!r} has magic number {found}; expected {magic} "
            f"({'images, idx3' if magic == IMAGES_MAGIC else 'labels, idx1'})"
        )
    ndim = raw[3]
    if raw[2] != UBYTE:
        raise ConfigError(f"IDX file {str(path)!r} has data type 0x{raw[2]:02x}; expected 0x08")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"IDX file {str(path)!r} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise ConfigError(
            f"IDX file {str(path)!r} holds {len(raw) - header} data bytes; its header "
            f"declares shape {list(shape)} = {expected} bytes (truncated or padded file)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def idx_shape(path: str | Path, *, magic: int) -> tuple[int, ...]:
    """The shape an IDX file's header declares, reading the header only (fast checks).

    Raises:
        ConfigError: missing file, bad gzip, wrong magic number or type, or a short header.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"IDX file {str(path)!r} does not exist or is not a file")
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if compressed:
                with gzip.open(raw) as fh:
                    head = fh.read(4 + 4 * 4)
            else:
                head = raw.read(4 + 4 * 4)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"IDX file {str(path)!r}: broken gzip stream ({exc})") from exc
    if len(head) < 4 or struct.unpack(">I", head[:4])[0] != magic or head[2] != UBYTE:
        raise ConfigError(f"IDX file {str(path)!r} does not start with the magic number {magic}")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise ConfigError(f"IDX file {str(path)!r} is truncated inside its header")
    return tuple(struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim]))


def _locate(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise ConfigError(f"IDX directory {str(directory)!r} lacks {stem} (or {stem}.gz)")


def locate_split(directory: str | Path, split: str) -> tuple[Path, Path]:
    """The images and labels files of ``train`` or ``test`` (plain or ``.gz``)."""
    images_stem, labels_stem = SPLIT_FILES[split]
    return _locate(Path(directory), images_stem), _locate(Path(directory), labels_stem)


def read_idx_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×H×W uint8) and labels (N uint8) of ``train`` or ``test`` in an MNIST layout."""
    directory = Path(directory)
    images_stem, labels_stem = SPLIT_FILES[split]
    images_path = _locate(directory, images_stem)
    labels_path = _locate(directory, labels_stem)
    images = read_idx(images_path, magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=LABELS_MAGIC)
    if images.ndim != 3:
        raise ConfigError(f"IDX file {str(images_path)!r} has {images.ndim} dimensions; needs 3")
    if labels.ndim != 1:
        raise ConfigError(f"IDX file {str(labels_path)!r} has {labels.ndim} dimensions; needs 1")
    if len(images) != len(labels):
        raise ConfigError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels (in {str(directory)!r})"
        )
    return images, labels


def verify_checksums(directory: str | Path, expected: dict[str, str]) -> None:
    """Check each named file (plain or ``.gz``) of ``directory`` against its SHA-256.

    Raises:
        ConfigError: a file is missing or its checksum differs, naming the file.
    """
    directory = Path(directory)
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise ConfigError(f"{str(path)!r} is missing (expected SHA-256 {digest[:12]}…)")
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != digest:
            raise ConfigError(
                f"{str(path)!r} has SHA-256 {found[:12]}…; expected {digest[:12]}… "
                "(a corrupt or different file)"
            )
