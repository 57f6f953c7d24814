"""What a spec's data set is (channels, classes, training-file size), read without loading it.

``nas validate`` checks that the data exist, are intact and fit the search space from file
headers, labels and checksums alone; the full load (and its normalisation) is the run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError

DIGITS_FACTS = ("digits", 1, 10)  # scikit-learn's bundled 8×8 digits


@dataclass(frozen=True)
class DataFacts:
    """The attributes :func:`nas.spec.resolve.check_data_fits` compares with the space."""

    name: str
    in_channels: int
    num_classes: int


def data_facts(data: Any) -> DataFacts | None:
    """Facts of a ``[data]`` spec, or ``None`` for kinds only a full load can check (npz, folder).

    Raises:
        ConfigError: a file is missing, corrupt (checksum, header, counts), or the split sizes do
            not fit the training images.
    """
    from nas.data.kinds import FASHION_MNIST_SHA256, fashion_mnist_dir

    if data.kind == "digits":
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
        classes = max(classes, int(y.max()) + 1 if len(y) else 0)
    n = counts["train"]
    if data.val_size + data.calib_size + (data.train_size or 1) > n:
        raise ConfigError(
            f"data.val_size={data.val_size} + data.calib_size={data.calib_size} + "
            f"data.train_size={data.train_size} exceed the {n} training images of "
            f"{str(directory)!r}"
        )
    return DataFacts(
        "fashion_mnist" if data.kind == "fashion_mnist" else directory.name, 1, classes
    )


def _images_shape(path: Path, magic: int, *, full: bool) -> tuple[int, ...]:
    """The header's shape; ``full`` also reads the data to check it is all there."""
    from nas.data.idx import idx_shape, read_idx

    return tuple(read_idx(path, magic=magic).shape) if full else idx_shape(path, magic=magic)
