"""The ViT supernet family: architecture, shared-weight supernet, static subnet, cost model.

The supernet's names are re-exported here, imported on first use (the architecture is torch-free).
"""

from __future__ import annotations

from nas.lazy import lazy_getattr

_LAZY = {
    "LayerPlan": "nas.supernets.vit.supernet",
    "ViTPlan": "nas.supernets.vit.supernet",
    "ViTSupernet": "nas.supernets.vit.supernet",
    "make_vit_plan": "nas.supernets.vit.supernet",
    "vit_arch": "nas.supernets.vit.supernet",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
