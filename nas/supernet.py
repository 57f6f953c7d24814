"""``Supernet(space)``: the shared-weight network of any registered family (see nas.supernets)."""

from __future__ import annotations

from nas.supernets.base import Supernet

__all__ = ["Supernet"]
