"""Data sets: loaders, their file formats and facts, and input resolution.

The names of :mod:`nas.data.datasets` are re-exported here (imported on first use, so spec
validation stays free of torch).
"""

from __future__ import annotations

from nas.lazy import lazy_getattr

_LAZY = {
    "DATASETS": "nas.data.kinds",
    "FASHION_MNIST_SHA256": "nas.data.kinds",
    "fashion_mnist_dir": "nas.data.kinds",
    "Preprocessing": "nas.data.datasets",
    "ImageData": "nas.data.datasets",
    "split_arrays": "nas.data.datasets",
    "load_digits_data": "nas.data.datasets",
    "load_npz": "nas.data.datasets",
    "load_image_folder": "nas.data.datasets",
    "IdxSplitSizes": "nas.data.datasets",
    "SplitSizes": "nas.data.datasets",
    "load_idx_data": "nas.data.datasets",
    "load_data": "nas.data.datasets",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
