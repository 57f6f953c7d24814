"""Image data sets as tensors with deterministic train / calibration / validation / test splits.

The default is scikit-learn's bundled ``load_digits`` (1,797 8×8 grayscale digits), so nothing is
downloaded. Users bring their own data as a folder of class sub-folders of images or as an
``.npz`` file with arrays ``x`` (N×C×H×W or N×H×W×C or N×H×W) and ``y`` (N integer labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from nas.errors import ConfigError, format_choice_error

Split = Literal["train", "calib", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "calib", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageData:
    """Normalised float images (N×C×H×W) and int64 labels per split.

    ``calib`` is held out from training and used only for BatchNorm re-calibration; ``val``
    ranks subnets during search; ``test`` is for final reporting.
    """

    name: str
    x: dict[str, Tensor]
    y: dict[str, Tensor]
    num_classes: int

    def __post_init__(self) -> None:
        for split in SPLITS:
            if split not in self.x or split not in self.y:
                raise ConfigError(f"data set {self.name!r} lacks split {split!r}; needs {SPLITS}")

    @property
    def in_channels(self) -> int:
        return int(self.x["train"].shape[1])

    @property
    def resolution(self) -> int:
        return int(self.x["train"].shape[-1])

    def sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return {s: int(self.y[s].shape[0]) for s in SPLITS}

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of one split."""
        if split not in SPLITS:
            raise ConfigError(format_choice_error("split", split, list(SPLITS)))
        return self.x[split], self.y[split]

    def loader(
        self,
        split: str,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> DataLoader:
        """A DataLoader over one split; shuffling uses its own seeded generator."""
        x, y = self.tensors(split)
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(x, y),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
        )


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float, float] = (0.6, 0.1, 0.15, 0.15),
) -> ImageData:
    """Stratified, seeded split into train/calib/val/test; standardise with train statistics."""
    from sklearn.model_selection import train_test_split

    if x.ndim != 4:
        raise ConfigError(f"images must be N×C×H×W, got shape {x.shape}")
    if len(x) != len(y):
        raise ConfigError(f"x has {len(x)} images but y has {len(y)} labels")
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ConfigError(f"split fractions={fractions} must be positive and sum to 1")
    y = np.asarray(y).astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=fractions[3], random_state=seed, stratify=y)
    rest_frac = 1.0 - fractions[3]
    rest2, val = train_test_split(
        rest, test_size=fractions[2] / rest_frac, random_state=seed + 1, stratify=y[rest]
    )
    train, calib = train_test_split(
        rest2,
        test_size=fractions[1] / (rest_frac - fractions[2]),
        random_state=seed + 2,
        stratify=y[rest2],
    )
    x = x.astype(np.float32)
    mean = x[train].mean(axis=(0, 2, 3), keepdims=True)
    std = x[train].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    x = (x - mean) / std
    parts = {"train": train, "calib": calib, "val": val, "test": test}
    return ImageData(
        name=name,
        x={k: torch.from_numpy(np.ascontiguousarray(x[v])) for k, v in parts.items()},
        y={k: torch.from_numpy(y[v]) for k, v in parts.items()},
        num_classes=int(y.max()) + 1,
    )


def load_digits_data(*, seed: int = 0) -> ImageData:
    """scikit-learn's bundled 8×8 digits (10 classes), split deterministically by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    return split_arrays("digits", x, bunch.target, seed=seed)


def load_npz(path: str | Path, *, seed: int = 0) -> ImageData:
    """Arrays ``x`` and ``y`` from an ``.npz`` file (no pickle: ``allow_pickle=False``)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise ConfigError(f"{path} lacks arrays {missing}; it has {archive.files}")
        x, y = archive["x"], archive["y"]
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    return split_arrays(path.stem, x, y, seed=seed)


def load_image_folder(
    root: str | Path, *, resolution: int, grayscale: bool = False, seed: int = 0
) -> ImageData:
    """``root/<class>/<image>`` files, resized to ``resolution``², classes in sorted order."""
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise ConfigError(f"{root} has no class sub-folders of images")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((root / cls).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(file) as img:
                img = img.convert("L" if grayscale else "RGB").resize((resolution, resolution))
                arr = np.asarray(img, dtype=np.float32) / 255.0
            images.append(arr[None] if grayscale else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise ConfigError(f"{root} contains no images with suffixes {list(IMAGE_SUFFIXES)}")
    return split_arrays(root.name, np.stack(images), np.array(labels), seed=seed)


DATASETS: tuple[str, ...] = ("digits", "npz", "folder")


def load_data(
    kind: str, *, path: str | None = None, resolution: int = 32, seed: int = 0
) -> ImageData:
    """Load by kind: ``digits`` (bundled), ``npz`` or ``folder`` (need ``path``)."""
    if kind == "digits":
        return load_digits_data(seed=seed)
    if kind not in DATASETS:
        raise ConfigError(format_choice_error("data.kind", kind, list(DATASETS)))
    if path is None:
        raise ConfigError(f"data.path is required for data.kind={kind!r}")
    if kind == "npz":
        return load_npz(path, seed=seed)
    return load_image_folder(path, resolution=resolution, seed=seed)
