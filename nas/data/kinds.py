"""The data set kinds a spec may name and where the built-in ones live, apart from the loaders.

The loaders (:mod:`nas.data.datasets`) import torch; spec validation needs only these names.
"""

from __future__ import annotations

from pathlib import Path

from nas.errors import ConfigError

DATASETS: tuple[str, ...] = ("fashion_mnist", "digits", "idx", "npz", "folder")
DATASETS_NEEDING_PATH: tuple[str, ...] = ("idx", "npz", "folder")
# Kinds divided from an official training file (the official test file is kept whole); the
# others are split by shares, a fixed 15 % of them the test split.
IDX_KINDS: tuple[str, ...] = ("fashion_mnist", "idx")
IDX_DEFAULT_VAL = 5000
IDX_DEFAULT_CALIB = 1000

# Label index → name, so an exported model's outputs map back to labels (Zalando's order).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
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
DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
    ),
    "train-labels-idx1-ubyte.gz": (
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
    ),
}
# Where Debian's package ``dataset-fashion-mnist`` installs the four files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist_dir(path: str | Path | None = None) -> Path:
    """The folder of the Fashion-MNIST files: ``path`` if given, else Debian's location.

    Raises:
        ConfigError: no folder holds the files, with how to install them.
    """
    directory = Path(path) if path else FASHION_MNIST_DIR
    if not (directory / "train-images-idx3-ubyte.gz").is_file():
        raise ConfigError(
            f"data.kind='fashion_mnist': no Fashion-MNIST files in {str(directory)!r}; install "
            "them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or set data.path "
            "to a folder holding the four *-ubyte.gz files"
        )
    return directory
