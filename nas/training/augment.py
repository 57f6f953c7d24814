"""Training-time data augmentation, seeded by ``(seed, global step, worker rank)``.

The augmented batch of a step is drawn once and shared by every subnet the step trains (the
largest one and its students), so in-place distillation matches the teacher's function on the
same augmented images. Draws depend only on the seed, the global step and the worker's rank: a
resumed run augments exactly as the uninterrupted run would have, and no random state needs to
be checkpointed.

Example:
    >>> import torch
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> augment_batch(x, "shift", seed=0, step=0).shape
    torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas.errors import ConfigError, format_choice_error
from nas.training.config import AUGMENTATIONS

AUGMENT_STREAM = 2**31 + 1  # seed stream of augmentation draws, apart from subnet sampling
MAX_SHIFT = 1  # pixels, in each direction, for ``shift``


def shift_offsets(n: int, *, seed: int, step: int, rank: int = 0) -> np.ndarray:
    """``n × 2`` integer (row, column) shifts in ``[-MAX_SHIFT, MAX_SHIFT]`` for one step."""
    rng = np.random.default_rng([seed, step, AUGMENT_STREAM, rank])
    return rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(n, 2))


def random_shift(x: Tensor, offsets: np.ndarray) -> Tensor:
    """Shift each image by its ``(row, column)`` offset, filling with the replicated edge.

    Equivalent to padding every side by ``MAX_SHIFT`` pixels (edge replication) and cropping
    the original size at the offset position.
    """
    p = MAX_SHIFT
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    out = torch.empty_like(x)
    for dy in range(-p, p + 1):
        for dx in range(-p, p + 1):
            mask = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            if not mask.any():
                continue
            index = torch.from_numpy(np.flatnonzero(mask)).to(x.device)
            out[index] = padded[index, :, p + dy : p + dy + h, p + dx : p + dx + w]
    return out


def augment_batch(x: Tensor, kind: str, *, seed: int, step: int, rank: int = 0) -> Tensor:
    """The training batch ``x`` (N×C×H×W) augmented by ``kind`` for global step ``step``.

    Args:
        x: This worker's batch.
        kind: ``none`` (returns ``x``) or ``shift`` (random shift by up to one pixel in each
            direction, edges replicated; one draw per image).
        seed: The training seed.
        step: The global optimizer step.
        rank: The Ray Train worker's rank (workers hold different shards of the batch).
    """
    if kind == "none":
        return x
    if kind == "shift":
        return random_shift(x, shift_offsets(x.shape[0], seed=seed, step=step, rank=rank))
    raise ConfigError(format_choice_error("train.augment", kind, AUGMENTATIONS))
