"""Architecture description of an elastic Vision Transformer supernet and its search space.

AutoFormer / HAT style: elastic depth (the first ``d`` blocks run), one global embedding width
(a prefix of the shared width), and per block the number of attention heads (a prefix of head
groups at a fixed head width), the MLP ratio (nested hidden neurons) and the bit-width of its
linear layers (weights and activations). Like :class:`~nas.supernets.mbconv.arch.MBConvArch`, one
frozen value
gives both the supernet's shared weights and the space's dimensions, so they cannot drift apart.
Torch-free: spec validation builds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from nas.errors import ConfigError, format_choice_error
from nas.space import Choice, SearchSpace
from nas.supernets import BIT_CHOICES

POOLINGS: tuple[str, ...] = ("cls", "mean")


def _ascending(key: str, values: tuple[object, ...]) -> None:
    if not values or tuple(sorted(values)) != tuple(values) or len(set(values)) != len(values):  # type: ignore[type-var]
        raise ConfigError(
            f"space.options.{key}={list(values)!r} must be a non-empty ascending list"
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class ViTArch:
    """The largest Vision Transformer plus its elastic choices.

    The head width is fixed at ``max(embed_dims) // max(heads)``: the largest subnet is a
    standard ViT (its heads exactly divide its embedding), and fewer heads use a prefix of the
    head groups, so Q, K, V and the output projection are sliced consistently.

    Args:
        in_channels: Image channels.
        num_classes: Classifier outputs.
        resolution: Input side length (square images).
        patch_size: Side of the square, non-overlapping patches (must divide ``resolution``).
        embed_dims: Choices of the global embedding width, ascending.
        depths: Choices of the number of transformer blocks, ascending.
        heads: Choices of attention heads per block, ascending.
        mlp_ratios: Choices of MLP hidden width / embedding width per block, ascending.
        bits: Choices of per-block bit-width of weights and activations (32: full precision).
        pooling: ``"cls"`` (a classification token) or ``"mean"`` (average over patches).
    """

    in_channels: int
    num_classes: int
    resolution: int
    patch_size: int
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    bits: tuple[int, ...] = (32,)
    pooling: Literal["cls", "mean"] = "cls"

    def __post_init__(self) -> None:
        for key in ("embed_dims", "depths", "heads", "mlp_ratios", "bits"):
            _ascending(key, getattr(self, key))
        for key in ("in_channels", "num_classes", "resolution", "patch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"space.options.{key}={value!r} must be a positive integer")
        if self.resolution % self.patch_size:
            raise ConfigError(
                f"space.options.patch_size={self.patch_size} must divide resolution "
                f"{self.resolution}; allowed: {_divisors(self.resolution)}"
            )
        if self.depths[0] < 1:
            raise ConfigError(f"space.options.depths={list(self.depths)} must all be >= 1")
        if self.heads[0] < 1 or self.embed_dims[0] < 1:
            raise ConfigError("space.options.heads and embed_dims must be >= 1")
        if self.embed_dims[-1] % self.heads[-1]:
            allowed = _divisors(self.embed_dims[-1])
            raise ConfigError(
                f"space.options.heads: {self.heads[-1]} heads do not divide the largest "
                f"embed_dim {self.embed_dims[-1]}; allowed head counts: {allowed}"
            )
        if any(r <= 0 for r in self.mlp_ratios):
            raise ConfigError(f"space.options.mlp_ratios={list(self.mlp_ratios)} must be > 0")
        for b in self.bits:
            if b not in BIT_CHOICES:
                raise ConfigError(format_choice_error("space.options.bits", b, list(BIT_CHOICES)))
        if self.pooling not in POOLINGS:
            raise ConfigError(format_choice_error("space.options.pooling", self.pooling, POOLINGS))

    @property
    def head_dim(self) -> int:
        return self.embed_dims[-1] // self.heads[-1]

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    @property
    def num_patches(self) -> int:
        return (self.resolution // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.pooling == "cls" else 0)

    def search_space(self, name: str) -> SearchSpace:
        """Dimensions ``embed_dim`` and ``depth``, and ``l{j}.heads/mlp_ratio/bits`` per block.

        Blocks beyond the smallest depth are active only when ``depth`` reaches them.
        """
        dims: list[Choice] = [Choice("embed_dim", self.embed_dims), Choice("depth", self.depths)]
        for j in range(self.max_depth):
            active_if = ("depth", j) if j >= self.depths[0] else None
            dims.append(Choice(f"l{j}.heads", self.heads, active_if=active_if))
            dims.append(Choice(f"l{j}.mlp_ratio", self.mlp_ratios, active_if=active_if))
            dims.append(Choice(f"l{j}.bits", self.bits, active_if=active_if))
        return SearchSpace(name, tuple(dims), metadata={"arch": self, "arch_dict": asdict(self)})


def mlp_hidden(embed_dim: int, ratio: float) -> int:
    """Hidden neurons of a block's MLP: the first ``round(embed_dim * ratio)`` shared ones."""
    return max(1, round(embed_dim * ratio))


__all__ = ["POOLINGS", "ViTArch", "mlp_hidden"]
