"""Image data sets as tensors with deterministic train / calibration / validation / test splits.

Built in: ``fashion_mnist`` (Zalando's Fashion-MNIST, 70,000 28×28 grey images in the MNIST
IDX format, installed by Debian's ``dataset-fashion-mnist`` and verified by SHA-256) and
``digits`` (scikit-learn's bundled 1,797 8×8 digits, a quick smoke set). Users bring any
MNIST-family IDX folder (``idx``), a folder of class sub-folders of images (``folder``) or an
``.npz`` file with arrays ``x`` (N×C×H×W or N×H×W×C or N×H×W), ``y`` (N integer labels) and,
optionally, ``class_names`` (one string per label).

``data.val_size``, ``data.calib_size`` and ``data.train_size`` apply to every kind: the IDX kinds
draw them from the official training file (the official test file is kept whole); the others
keep a fixed 15 % test share and draw them from the rest (unset: the default 60/10/15/15 shares).

Every data set records its :class:`Preprocessing` (how raw pixels become model inputs), so an
exported model can carry it and accept raw pixels.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from nas.data.facts import SPLIT_FRACTIONS, share_split_counts
from nas.data.kinds import (  # re-exported
    DATASETS,
    DIGITS_CLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SHA256,
    IDX_DEFAULT_CALIB,
    IDX_DEFAULT_VAL,
    fashion_mnist_dir,
)
from nas.errors import ConfigError, format_choice_error

Split = Literal["train", "calib", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "calib", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Preprocessing:
    """How a raw image becomes the model's input: ``(raw - mean) / std`` per channel.

    ``raw_range`` is the documented range of raw pixel values (``[0, 255]`` for IDX files),
    ``channel_order`` ``grey`` or ``RGB``; ``size`` is the side length the model sees.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    raw_range: tuple[float, float]
    channel_order: str
    size: int

    def normalise(self, raw: Tensor) -> Tensor:
        """Model input from raw pixels (N×C×H×W float)."""
        mean = torch.tensor(self.mean, dtype=raw.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=raw.dtype).view(1, -1, 1, 1)
        return (raw - mean) / std

    def denormalise(self, x: Tensor) -> Tensor:
        """Raw pixels from model inputs (the inverse of :meth:`normalise`)."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean

    def to_dict(self) -> dict[str, object]:
        return {
            "formula": "(raw - mean) / std, per channel",
            "mean": list(self.mean),
            "std": list(self.std),
            "raw_range": list(self.raw_range),
            "channel_order": self.channel_order,
            "layout": "N×C×H×W float32",
            "size": self.size,
        }


@dataclass(frozen=True)
class ImageData:
    """Normalised float images (N×C×H×W) and int64 labels per split.

    ``calib`` is held out from training and used only for BatchNorm re-calibration; ``val``
    ranks subnets during search; ``test`` is for final reporting. ``class_names[i]`` names label
    ``i`` where the data set says (``None``: unknown), so exported models map back to labels.
    """

    name: str
    x: dict[str, Tensor]
    y: dict[str, Tensor]
    num_classes: int
    preprocessing: Preprocessing | None = None
    split_note: str = ""
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for split in SPLITS:
            if split not in self.x or split not in self.y:
                raise ConfigError(f"data set {self.name!r} lacks split {split!r}; needs {SPLITS}")
        if self.class_names is not None and len(self.class_names) < self.num_classes:
            raise ConfigError(
                f"data set {self.name!r} names {len(self.class_names)} classes but its labels "
                f"reach {self.num_classes - 1}; give one class name per label"
            )

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


@dataclass(frozen=True)
class SplitSizes:
    """Images per split that a spec asks for (``data.val_size`` etc.); ``None``: the default.

    The IDX kinds draw ``val`` (default 5000) and ``calib`` (default 1000) first, stratified and
    seeded, from the official training file; ``train`` is the rest, or a seeded stratified
    subset of it of that many images. The other kinds keep a fixed test share and draw the same
    way from the rest (defaults: the 60/10/15/15 shares of :data:`SPLIT_FRACTIONS`).
    """

    val: int | None = None
    calib: int | None = None
    train: int | None = None


IdxSplitSizes = SplitSizes  # the older name, still imported by benchmarks


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float, float] = SPLIT_FRACTIONS,
    raw_range: tuple[float, float] | None = None,
    sizes: SplitSizes = SplitSizes(),
    class_names: Sequence[str] | None = None,
) -> ImageData:
    """Stratified, seeded split into train/calib/val/test; standardise with train statistics.

    ``fractions`` are the default shares; ``sizes`` overrides val, calib and train counts.
    """
    if x.ndim != 4:
        raise ConfigError(f"images must be N×C×H×W, got shape {x.shape}")
    if len(x) != len(y):
        raise ConfigError(f"x has {len(x)} images but y has {len(y)} labels")
    y = np.asarray(y).astype(np.int64)
    train, calib, val, test = _share_split(
        y, seed=seed, fractions=fractions, sizes=sizes, name=name
    )
    x = x.astype(np.float32)
    mean = x[train].mean(axis=(0, 2, 3), keepdims=True)
    std = x[train].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    preprocessing = Preprocessing(
        mean=tuple(float(v) for v in mean.ravel()),
        std=tuple(float(v) for v in std.ravel()),
        raw_range=raw_range or (float(x.min()), float(x.max())),
        channel_order="grey" if x.shape[1] == 1 else "RGB",
        size=int(x.shape[-1]),
    )
    x = (x - mean) / std
    parts = {"train": train, "calib": calib, "val": val, "test": test}
    note = f"stratified seeded split (seed {seed}) of {len(y)} images: " + ", ".join(
        f"{k} {len(v)}" for k, v in parts.items()
    )
    return ImageData(
        name=name,
        x={k: torch.from_numpy(np.ascontiguousarray(x[v])) for k, v in parts.items()},
        y={k: torch.from_numpy(y[v]) for k, v in parts.items()},
        num_classes=int(y.max()) + 1,
        preprocessing=preprocessing,
        split_note=note,
        class_names=tuple(class_names) if class_names is not None else None,
    )


def _share_split(
    y: np.ndarray,
    *,
    seed: int,
    fractions: tuple[float, float, float, float],
    sizes: SplitSizes,
    name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train, calib, val, test indices: test a fixed share, then val and calib, train the rest.

    Counts are passed to scikit-learn as integers equal to what its own rounding of the default
    shares gives, so with no sizes set the split is the one the shares always gave.
    """
    from sklearn.model_selection import train_test_split

    n_test, n_val, n_calib = share_split_counts(
        len(y), val=sizes.val, calib=sizes.calib, train=sizes.train, name=name, fractions=fractions
    )
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=y)
    rest2, val = train_test_split(rest, test_size=n_val, random_state=seed + 1, stratify=y[rest])
    train, calib = train_test_split(
        rest2, test_size=n_calib, random_state=seed + 2, stratify=y[rest2]
    )
    if sizes.train is not None and sizes.train < len(train):
        train, _ = train_test_split(
            train, train_size=sizes.train, random_state=seed + 3, stratify=y[train]
        )
    return train, calib, val, test


def load_digits_data(*, seed: int = 0, sizes: SplitSizes = SplitSizes()) -> ImageData:
    """scikit-learn's bundled 8×8 digits (10 classes), split deterministically by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    try:
        return split_arrays(
            "digits",
            x,
            bunch.target,
            seed=seed,
            raw_range=(0.0, 16.0),
            sizes=sizes,
            class_names=DIGITS_CLASSES,
        )
    except ConfigError:
        raise
    except ValueError as exc:  # scikit-learn: a split smaller than the number of classes
        raise ConfigError(
            f"data.kind='digits': the split sizes cannot be stratified over 10 classes: {exc}"
        ) from exc


def load_npz(path: str | Path, *, seed: int = 0, sizes: SplitSizes = SplitSizes()) -> ImageData:
    """Arrays ``x``, ``y`` and optional ``class_names`` of an ``.npz`` (``allow_pickle=False``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise ConfigError(f"data.path={str(path)!r} is a single .npy array, not an .npz")
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise ConfigError(
                    f"data.path={str(path)!r} lacks arrays {missing}; it has {archive.files}"
                )
            x, y = archive["x"], archive["y"]
            names = archive["class_names"] if "class_names" in archive.files else None
    except ConfigError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # np.load raises ValueError for object arrays (pickles) and for non-npz bytes.
        raise ConfigError(f"data.path={str(path)!r} is not a readable .npz file: {exc}") from exc
    if x.dtype.kind not in "uif" or y.dtype.kind not in "ui":
        raise ConfigError(
            f"data.path={str(path)!r}: x must be numeric and y integer labels; "
            f"got x {x.dtype}, y {y.dtype}"
        )
    if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ConfigError(
            f"data.path={str(path)!r}: x must be N×H×W or N×C×H×W (or N×H×W×C) and y N labels; "
            f"got x {x.shape}, y {y.shape}"
        )
    if y.min() < 0 or not np.isfinite(x).all():
        raise ConfigError(f"data.path={str(path)!r}: labels must be >= 0 and pixels finite")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    return _split_or_explain(
        path, x, y.astype(np.int64), seed=seed, sizes=sizes, class_names=_npz_names(path, names)
    )


def _npz_names(path: Path, names: np.ndarray | None) -> tuple[str, ...] | None:
    """The ``class_names`` array of an ``.npz`` as strings; it must be 1-D text."""
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise ConfigError(
            f"data.path={str(path)!r}: class_names must be a 1-D array of strings, got "
            f"{names.dtype} of shape {names.shape}"
        )
    return tuple(str(v) for v in names)


def _split_or_explain(path: Path, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> ImageData:
    """:func:`split_arrays`; scikit-learn's "too few per class" becomes one line on data.path."""
    try:
        return split_arrays(path.stem, x, y, **kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(
            f"data.path={str(path)!r}: {len(y)} images cannot be split into stratified "
            f"train/calib/val/test parts: {exc}"
        ) from exc


def load_image_folder(
    root: str | Path,
    *,
    resolution: int,
    grayscale: bool = False,
    seed: int = 0,
    sizes: SplitSizes = SplitSizes(),
) -> ImageData:
    """``root/<class>/<image>`` files, resized to ``resolution``², classes in sorted order.

    The sorted sub-folder names become the class names, label ``i`` the ``i``-th of them.
    """
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
            try:
                with Image.open(file) as img:
                    sized = img.convert("L" if grayscale else "RGB").resize(
                        (resolution, resolution)
                    )
                    arr = np.asarray(sized, dtype=np.float32)
            except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
                raise ConfigError(f"data.path: {file} is not a readable image: {exc}") from exc
            images.append(arr[None] if grayscale else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise ConfigError(f"{root} contains no images with suffixes {list(IMAGE_SUFFIXES)}")
    return _split_or_explain(
        root,
        np.stack(images),
        np.array(labels),
        seed=seed,
        raw_range=(0.0, 255.0),
        sizes=sizes,
        class_names=classes,
    )


def load_idx_data(
    directory: str | Path,
    *,
    name: str | None = None,
    seed: int = 0,
    sizes: SplitSizes = SplitSizes(),
    checksums: dict[str, str] | None = None,
    class_names: Sequence[str] | None = None,
) -> ImageData:
    """An MNIST-family IDX folder: train / calib / val from its training file, its test file kept.

    The official test images are used only for the numbers reported at the end, never to
    select; normalisation statistics come from the train split alone.

    Raises:
        ConfigError: a file is missing, corrupt (checksum, magic, counts) or the split sizes do
            not fit the training images.
    """
    from sklearn.model_selection import train_test_split

    from nas.data.idx import read_idx_split, verify_checksums

    directory = Path(directory)
    if checksums:
        verify_checksums(directory, checksums)
    x_all, y_all = read_idx_split(directory, "train")
    x_test, y_test = read_idx_split(directory, "test")
    if x_all.shape[1:] != x_test.shape[1:]:
        raise ConfigError(
            f"{directory}: training images are {list(x_all.shape[1:])} but test images are "
            f"{list(x_test.shape[1:])}"
        )
    n = len(y_all)
    train_size = sizes.train
    n_val = IDX_DEFAULT_VAL if sizes.val is None else sizes.val
    n_calib = IDX_DEFAULT_CALIB if sizes.calib is None else sizes.calib
    if n_val + n_calib + (train_size or 1) > n:
        raise ConfigError(
            f"data.val_size={n_val} + data.calib_size={n_calib} + data.train_size="
            f"{train_size} exceed the {n} training images of {str(directory)!r}"
        )
    y_all = y_all.astype(np.int64)
    idx = np.arange(n)
    rest, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=y_all)
    rest, calib = train_test_split(
        rest, test_size=n_calib, random_state=seed + 1, stratify=y_all[rest]
    )
    if train_size is not None and train_size < len(rest):
        rest, _ = train_test_split(
            rest, train_size=train_size, random_state=seed + 2, stratify=y_all[rest]
        )
    train = np.sort(rest)
    mean = float(x_all[train].mean(dtype=np.float64))
    std = float(x_all[train].std(dtype=np.float64)) + 1e-6
    preprocessing = Preprocessing(
        mean=(mean,),
        std=(std,),
        raw_range=(0.0, 255.0),
        channel_order="grey",
        size=int(x_all.shape[-1]),
    )

    def tensor(images: np.ndarray) -> Tensor:
        return preprocessing.normalise(torch.from_numpy(images.astype(np.float32)[:, None]))

    parts = {"train": train, "calib": calib, "val": val}
    xs = {k: tensor(x_all[v]) for k, v in parts.items()}
    ys = {k: torch.from_numpy(y_all[v]) for k, v in parts.items()}
    xs["test"] = tensor(x_test)
    ys["test"] = torch.from_numpy(y_test.astype(np.int64))
    note = (
        f"from the {n} official training images (seed {seed}, stratified): train "
        f"{len(train)}, calib {len(calib)}, val {len(val)}; test: the {len(y_test)} official "
        "test images, used only for reported numbers"
    )
    return ImageData(
        name=name or directory.name,
        x=xs,
        y=ys,
        num_classes=int(max(y_all.max(), y_test.max())) + 1,
        preprocessing=preprocessing,
        split_note=note,
        class_names=tuple(class_names) if class_names is not None else None,
    )


def load_data(
    kind: str,
    *,
    path: str | None = None,
    resolution: int = 32,
    seed: int = 0,
    sizes: SplitSizes = SplitSizes(),
) -> ImageData:
    """Load by kind: ``fashion_mnist`` and ``digits`` (built in); ``idx``, ``npz``, ``folder``.

    ``sizes`` applies to every kind: the IDX kinds divide their training file, the others the
    images left after a fixed test share.
    """
    if kind not in DATASETS:
        raise ConfigError(format_choice_error("data.kind", kind, list(DATASETS)))
    if kind == "digits":
        return load_digits_data(seed=seed, sizes=sizes)
    if kind == "fashion_mnist":
        return load_idx_data(
            fashion_mnist_dir(path),
            name="fashion_mnist",
            seed=seed,
            sizes=sizes,
            checksums=FASHION_MNIST_SHA256,
            class_names=FASHION_MNIST_CLASSES,
        )
    if path is None:
        raise ConfigError(f"data.path is required for data.kind={kind!r}")
    if kind == "idx":
        return load_idx_data(path, seed=seed, sizes=sizes)
    if kind == "npz":
        return load_npz(path, seed=seed, sizes=sizes)
    return load_image_folder(path, resolution=resolution, seed=seed, sizes=sizes)
