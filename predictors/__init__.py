"""Accuracy and latency predictors: features, estimators, quality reports, transfer, and apps."""

from __future__ import annotations

from nas.lazy import install_moved_modules

# Old module paths of the 0.1 layout (docs/layout.md), kept for one release.
MOVED_MODULES = {
    "predictors.commands": "predictors.apps.commands",
    "predictors.device_bank": "predictors.transfer.device_bank",
    "predictors.service": "predictors.apps.service",
    "predictors.service_transfer": "predictors.apps.service_transfer",
    "predictors.transfer_cli": "predictors.apps.transfer_cli",
    "predictors.transfer_fit": "predictors.transfer.fit",
    "predictors.transfer_persistence": "predictors.transfer.persistence",
}
install_moved_modules(MOVED_MODULES, removal="0.3.0")
