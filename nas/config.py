r"""Experiment specs: TOML files parsed into frozen, validated dataclasses.

Every section is a dataclass; unknown keys are errors naming the allowed keys, bad values name the
allowed values, and everything is checked before any work (or Ray) starts.

Example:
    >>> spec = ExperimentSpec.from_toml_text('name = "demo"\\n[space]\\nname = "tiny_cnn"\\n')
    >>> spec.space.name
    'tiny_cnn'
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nas.errors import ConfigError, format_choice_error
from nas.measure.targets import HardwareTarget

T = TypeVar("T")

PREDICTOR_KINDS: tuple[str, ...] = ("ridge", "rf", "gbr", "mlp", "ensemble")


def _check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(format_choice_error(key, value, list(allowed)))


def _check_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} must be {bound}")


@dataclass(frozen=True)
class SpaceSpec:
    """Which registered search space, with its build options."""

    name: str = "tiny_cnn"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import search_spaces

        _check_choice("space.name", self.name, tuple(search_spaces.names()))
        if self.name not in search_spaces.SUPERNET_SPACES:
            raise ConfigError(
                f"space.name={self.name!r} has no supernet; "
                f"use one of {list(search_spaces.SUPERNET_SPACES)}"
            )
        search_spaces.get(self.name, **dict(self.options))  # bad options fail here

    def build(self):  # type: ignore[no-untyped-def]
        import search_spaces

        return search_spaces.get(self.name, **dict(self.options))


@dataclass(frozen=True)
class DataSpec:
    """Where images come from and how the IDX kinds divide their training file.

    ``fashion_mnist`` (Debian's ``dataset-fashion-mnist``, or ``path``) and ``digits``
    (scikit-learn) are built in. For ``fashion_mnist`` and ``idx``, ``val_size`` and
    ``calib_size`` images are held out of the official training file, ``train_size`` (all the
    rest when unset) trains, and the official test file is kept for reported numbers only.
    """

    kind: str = "fashion_mnist"
    path: str | None = None
    resolution: int = 32
    train_size: int | None = None
    val_size: int = 5000
    calib_size: int = 1000

    def __post_init__(self) -> None:
        from nas.data import DATASETS, DATASETS_NEEDING_PATH

        _check_choice("data.kind", self.kind, DATASETS)
        if self.kind in DATASETS_NEEDING_PATH and not self.path:
            raise ConfigError(f"data.path is required when data.kind={self.kind!r}")
        _check_positive("data.resolution", self.resolution)
        for key in ("val_size", "calib_size"):
            _check_positive(f"data.{key}", getattr(self, key))
        if self.train_size is not None:
            _check_positive("data.train_size", self.train_size)

    def split_sizes(self):  # type: ignore[no-untyped-def]
        """The IDX split sizes this spec asks for."""
        from nas.data import IdxSplitSizes

        return IdxSplitSizes(val=self.val_size, calib=self.calib_size, train=self.train_size)


@dataclass(frozen=True)
class RaySpec:
    """Where work runs: ``address`` empty → a local Ray instance.

    ``cpus_per_worker`` is what each Ray Train worker reserves and the torch threads it uses.
    """

    address: str | None = None
    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        _check_positive("ray.num_workers", self.num_workers)
        _check_positive("ray.cpus_per_worker", self.cpus_per_worker)
        if self.num_cpus is not None:
            _check_positive("ray.num_cpus", self.num_cpus)


@dataclass(frozen=True)
class MeasureSpec:
    """Which targets to measure and how many subnets build the predictors' data set."""

    targets: tuple[str, ...] = ("cpu_fp32",)
    n_samples: int = 60
    calib_images: int = 256
    eval_split: str = "val"
    latency_repeats: int = 20
    latency_warmup: int = 5

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("measure.targets must name at least one target")
        _check_positive("measure.n_samples", self.n_samples)
        _check_positive("measure.calib_images", self.calib_images)
        _check_positive("measure.latency_repeats", self.latency_repeats)
        _check_positive("measure.latency_warmup", self.latency_warmup, allow_zero=True)
        # The test split is never used to select: it is reported once, at export.
        _check_choice("measure.eval_split", self.eval_split, ("val",))


@dataclass(frozen=True)
class PredictorSpec:
    """Predictor kind and the held-out share used for its quality report."""

    kind: str = "gbr"
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        _check_choice("predictors.kind", self.kind, PREDICTOR_KINDS)
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"predictors.test_fraction={self.test_fraction!r} must be in (0, 1)")


@dataclass(frozen=True)
class SearchSpec:
    """Objectives and constraints as strings (``"top1:max"``, ``"latency_ms@cpu_fp32 <= 5"``)."""

    algorithm: str = "pymoo-nsga2"
    objectives: tuple[str, ...] = ("top1:max", "latency_ms@cpu_fp32:min")
    constraints: tuple[str, ...] = ()
    budget: int = 300
    use_predictors: bool = True

    def __post_init__(self) -> None:
        import nas.search
        from nas.search.objectives import Constraint, Objective

        _check_choice("search.algorithm", self.algorithm, tuple(nas.search.names()))
        if len(self.objectives) < 2:
            raise ConfigError(
                f"search.objectives={list(self.objectives)!r} needs at least 2 objectives"
            )
        for text in self.objectives:
            Objective.parse(text)
        for text in self.constraints:
            Constraint.parse(text)
        _check_positive("search.budget", self.budget)


@dataclass(frozen=True)
class ExportSpec:
    """What to write for each Pareto-front subnet."""

    onnx: bool = True
    max_subnets: int = 8
    measure_front: bool = True

    def __post_init__(self) -> None:
        _check_positive("export.max_subnets", self.max_subnets)


@dataclass(frozen=True)
class TrainSpec:
    """Supernet training: the table is passed to ``nas.training.config.TrainConfig``."""

    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nas.training.config import TrainConfig

        TrainConfig.from_dict(self.options)  # bad keys and values fail at parse time


SECTIONS: dict[str, type] = {
    "space": SpaceSpec,
    "data": DataSpec,
    "train": TrainSpec,
    "ray": RaySpec,
    "measure": MeasureSpec,
    "predictors": PredictorSpec,
    "search": SearchSpec,
    "export": ExportSpec,
}


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment: train → measure → fit predictors → search → export."""

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs/experiment"
    space: SpaceSpec = field(default_factory=SpaceSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    ray: RaySpec = field(default_factory=RaySpec)
    targets: tuple[HardwareTarget, ...] = ()
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    predictors: PredictorSpec = field(default_factory=PredictorSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    export: ExportSpec = field(default_factory=ExportSpec)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")

    # -- parsing -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentSpec:
        """Parse and validate a TOML file."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"experiment spec {str(path)!r} does not exist")
        try:
            return cls.from_toml_text(path.read_text(), default_name=path.stem)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc

    @classmethod
    def from_toml_text(cls, text: str, *, default_name: str = "experiment") -> ExperimentSpec:
        """Parse and validate TOML text."""
        return cls.from_dict(tomllib.loads(text), default_name=default_name)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, default_name: str = "experiment"
    ) -> ExperimentSpec:
        """Build from nested plain data (as parsed from TOML)."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        _reject_unknown("", data, allowed)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{key} must be a table, got {value!r}")
                if SECTIONS[key] is TrainSpec:
                    kwargs[key] = TrainSpec(options=dict(value))
                elif SECTIONS[key] is SpaceSpec:
                    _reject_unknown("space.", value, ["name", "options"])
                    kwargs[key] = SpaceSpec(
                        name=value.get("name", "tiny_cnn"),
                        options=_tuples(dict(value.get("options", {}))),
                    )
                else:
                    kwargs[key] = _build(SECTIONS[key], value, f"{key}.")
            elif key == "targets":
                if not isinstance(value, list):
                    raise ConfigError(f"targets must be an array of tables, got {value!r}")
                kwargs[key] = tuple(_target(i, t) for i, t in enumerate(value))
            else:
                kwargs[key] = value
        kwargs.setdefault("name", default_name)
        kwargs.setdefault("output_dir", f"runs/{kwargs['name']}")
        return cls(**kwargs)


def _target(index: int, data: Any) -> HardwareTarget:
    """A user-declared hardware target, validated by ``HardwareTarget`` itself."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"targets[{index}] must be a table, got {data!r}")
    try:
        return HardwareTarget.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"targets[{index}]: {exc}") from exc


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _reject_unknown(prefix: str, data: Mapping[str, Any], allowed: list[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key} is not a valid key; allowed keys: {sorted(allowed)}")


def _build(cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
    """Instantiate dataclass ``cls`` from ``data``: unknown keys and wrong types are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')} must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    _reject_unknown(prefix, data, list(fields))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(f"{prefix}{key}", value, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        raise ConfigError(f"{prefix.rstrip('.')}: required keys {required}: {exc}") from exc


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple type hint; lists become tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}={value!r} has the wrong type")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} must be a list")
        (item_type, *_) = typing.get_args(hint) or (Any,)
        return tuple(_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if hint is Any or origin is not None:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be a {hint.__name__}, not a boolean")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{key}={value!r} must be a {hint.__name__}")
    return value
