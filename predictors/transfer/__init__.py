"""Few-shot latency transfer to a new device: device bank, estimator, predictor and its files.

The names of :mod:`predictors.transfer.few_shot` are re-exported here, imported on first use.
"""

from __future__ import annotations

from nas.lazy import lazy_getattr

_LAZY = {
    "TransferPredictor": "predictors.transfer.few_shot",
    "fit_transfer": "predictors.transfer.few_shot",
    "choose_representation": "predictors.transfer.few_shot",
    "representation_scores": "predictors.transfer.few_shot",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
