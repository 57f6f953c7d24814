from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data.datasets import SPLITS, load_data, load_digits_data, load_image_folder, load_npz
from nas.errors import ConfigError


def test_digits_splits_are_disjoint_deterministic_and_normalised() -> None:
    a, b = load_digits_data(seed=0), load_digits_data(seed=0)
    sizes = a.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["train"] > sizes["val"] > 0 and sizes["calib"] > 0
    for split in SPLITS:
        assert torch.equal(a.x[split], b.x[split])
    rows = {tuple(np.round(r.numpy().ravel(), 4)) for s in SPLITS for r in a.x[s]}
    assert len(rows) >= 1790  # digits has a handful of duplicate images; splits do not overlap
    assert abs(float(a.x["train"].mean())) < 1e-4
    assert a.in_channels == 1 and a.resolution == 8 and a.num_classes == 10
    c = load_digits_data(seed=1)
    assert not torch.equal(a.y["test"], c.y["test"])


def test_npz_loader_accepts_channels_last_and_refuses_pickles(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((100, 6, 6, 3)).astype(np.float32)
    y = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    data = load_npz(tmp_path / "mine.npz")
    assert data.in_channels == 3 and data.num_classes == 4
    np.savez(tmp_path / "objects.npz", x=np.array([object()], dtype=object), y=y)
    with pytest.raises(ValueError, match="pickle"):
        load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(ConfigError, match="'y'"):
        load_npz(tmp_path / "nolabels.npz")


def test_image_folder_loader(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(20):
            img = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / cls / f"{i}.png")
    data = load_image_folder(tmp_path, resolution=8)
    assert data.x["train"].shape[1:] == (3, 8, 8)
    assert data.num_classes == 2


def test_unknown_data_kind_names_allowed() -> None:
    with pytest.raises(
        ConfigError, match=r"data.kind='imagenet' is not one of \['fashion_mnist', 'digits', 'idx'"
    ):
        load_data("imagenet")
