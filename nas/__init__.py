"""Weight-sharing neural architecture search: elastic supernets, measurement, predictors, search.

Public entry points are re-exported here, imported on first use (PEP 562) so that the command
line starts without importing torch; Ray-dependent code lives in :mod:`nas.execution`.
"""

from __future__ import annotations

from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.lazy import install_moved_modules, lazy_getattr

_LAZY = {
    "Evaluation": "nas.results",
    "ResultStore": "nas.results",
    "Choice": "nas.space",
    "SearchSpace": "nas.space",
    "SubnetConfig": "nas.subnet",
    "Supernet": "nas.supernets.base",
}

# Old module paths of the 0.1 layout (docs/layout.md), kept for one release.
MOVED_MODULES = {
    "nas.arch": "nas.supernets.mbconv.arch",
    "nas.config": "nas.spec.config",
    "nas.console": "nas.pipeline.console",
    "nas.data_facts": "nas.data.facts",
    "nas.data_kinds": "nas.data.kinds",
    "nas.export": "nas.artifacts.export",
    "nas.front": "nas.search.front",
    "nas.idx": "nas.data.idx",
    "nas.measure.int8": "nas.deploy.int8",
    "nas.measure.mixed_precision": "nas.deploy.mixed_precision",
    "nas.measure.ort_kernels": "nas.deploy.ort_kernels",
    "nas.measure.weight_only": "nas.deploy.weight_only",
    "nas.onnx_export": "nas.deploy.onnx_export",
    "nas.quantization": "nas.elastic.quantization",
    "nas.resolution": "nas.data.resolution",
    "nas.resolve": "nas.spec.resolve",
    "nas.run_dir": "nas.pipeline.run_dir",
    "nas.run_status": "nas.pipeline.run_status",
    "nas.safe_files": "nas.artifacts.safe_files",
    "nas.spec_reference": "nas.spec.reference",
    "nas.static": "nas.supernets.mbconv.static",
    "nas.static_vit": "nas.supernets.vit.static",
    "nas.supernet": "nas.supernets.base",
    "nas.supernets.mbconv_cost": "nas.supernets.mbconv.cost",
    "nas.supernets.vit_cost": "nas.supernets.vit.cost",
    "nas.vit_arch": "nas.supernets.vit.arch",
}
install_moved_modules(MOVED_MODULES, removal="0.3.0")

__all__ = [
    "Choice",
    "ConfigError",
    "Evaluation",
    "IncompatibleArtifactError",
    "ResultStore",
    "SearchSpace",
    "SubnetConfig",
    "Supernet",
    "UnsafeFileError",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
