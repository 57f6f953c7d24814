"""What a spec's data set is (channels, classes, training-file size), read without loading it.

``nas validate`` checks that the data exist, are intact and fit the search space from file
headers, labels and checksums alone; the full load (and its normalisation) is the run's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError

DIGITS_FACTS = ("digits", 1, 10)  # scikit-learn's bundled 8×8 digits
DIGITS_IMAGES = 1797
# train, calib, val, test shares of the kinds without an official test file (digits, npz, folder)
SPLIT_FRACTIONS: tuple[float, float, float, float] = (0.6, 0.1, 0.15, 0.15)


@dataclass(frozen=True)
class DataFacts:
    """The attributes :func:`nas.spec.resolve.check_data_fits` compares with the space."""

    name: str
    in_channels: int
    num_classes: int
    resolution: int | None = None  # the images' side, where the header says


def data_facts(data: Any) -> DataFacts | None:
    """Facts of a ``[data]`` spec, or ``None`` for kinds only a full load can check (npz, folder).

    Raises:
        ConfigError: a file is missing, corrupt (checksum, header, counts), or the split sizes do
            not fit the training images.
    """
    from nas.data.kinds import FASHION_MNIST_SHA256, fashion_mnist_dir

    if data.kind == "digits":
        share_split_counts(
            DIGITS_IMAGES,
            val=data.val_size,
            calib=data.calib_size,
            train=data.train_size,
            name="digits",
        )
        return DataFacts(*DIGITS_FACTS)
    if data.kind not in ("fashion_mnist", "idx"):
        return None
    from nas.data.idx import IMAGES_MAGIC, LABELS_MAGIC, locate_split, read_idx, verify_checksums

    if data.kind == "fashion_mnist":
        directory = fashion_mnist_dir(data.path)
        verify_checksums(directory, FASHION_MNIST_SHA256)
    else:
        directory = Path(data.path)
        if not directory.is_dir():
            raise ConfigError(f"data.path={data.path!r} is not a folder of IDX files")
    classes = 0
    counts = {}
    side = 0
    for split in ("train", "test"):
        images, labels = locate_split(directory, split)
        shape = _images_shape(images, IMAGES_MAGIC, full=data.kind == "idx")
        y = read_idx(labels, magic=LABELS_MAGIC)
        if len(shape) != 3 or shape[0] != len(y):
            raise ConfigError(
                f"{images.name} declares shape {list(shape)} but {labels.name} holds {len(y)} "
                f"labels (in {str(directory)!r})"
            )
        counts[split] = len(y)
        side = int(shape[-1])
        classes = max(classes, int(y.max()) + 1 if len(y) else 0)
    n = counts["train"]
    if data.val_size + data.calib_size + (data.train_size or 1) > n:
        raise ConfigError(
            f"data.val_size={data.val_size} + data.calib_size={data.calib_size} + "
            f"data.train_size={data.train_size} exceed the {n} training images of "
            f"{str(directory)!r}"
        )
    return DataFacts(
        "fashion_mnist" if data.kind == "fashion_mnist" else directory.name, 1, classes, side
    )


def _images_shape(path: Path, magic: int, *, full: bool) -> tuple[int, ...]:
    """The header's shape; ``full`` also reads the data to check it is all there."""
    from nas.data.idx import idx_shape, read_idx

    return tuple(read_idx(path, magic=magic).shape) if full else idx_shape(path, magic=magic)


def share_split_counts(
    n: int,
    *,
    val: int | None,
    calib: int | None,
    train: int | None,
    name: str,
    fractions: tuple[float, float, float, float] = SPLIT_FRACTIONS,
) -> tuple[int, int, int]:
    """``(test, val, calib)`` image counts of a data set split by shares (digits, npz, folder).

    The test share is fixed; an unset ``val`` or ``calib`` is the default split's count, rounded
    as scikit-learn rounds it, so a spec that sets no size splits as it always did.

    Raises:
        ConfigError: the sizes asked for exceed the images left after the test share.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ConfigError(f"split fractions={fractions} must be positive and sum to 1")
    test = math.ceil(fractions[3] * n)
    rest_frac = 1.0 - fractions[3]
    default_val = math.ceil(fractions[2] / rest_frac * (n - test))
    default_calib = math.ceil(fractions[1] / (rest_frac - fractions[2]) * (n - test - default_val))
    val_n = default_val if val is None else val
    calib_n = default_calib if calib is None else calib
    if val_n + calib_n + (train or 1) > n - test:
        raise ConfigError(
            f"data.val_size={val_n} + data.calib_size={calib_n} + data.train_size={train} "
            f"exceed the {n - test} images of {name!r} left after its fixed "
            f"{fractions[3]:.0%} test share ({test} of {n})"
        )
    return test, val_n, calib_n
