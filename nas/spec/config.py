r"""Experiment specs: TOML files parsed into frozen, validated dataclasses.

Every section is a dataclass; unknown keys are errors naming the allowed keys, bad values name the
allowed values, and everything is checked before any work (or Ray) starts.

Example:
    >>> spec = ExperimentSpec.from_toml_text('name = "demo"\n[space]\nname = "tiny_cnn"\n')
    >>> spec.space.name
    'tiny_cnn'
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nas.errors import ConfigError, format_choice_error
from nas.measure.targets import HardwareTarget, default_registry
from nas.spec_fields import Rule, check_fields, check_value, rule_of, spec_field

MAX_SPEC_BYTES = 1_000_000  # a spec is a short text file; anything larger is a mistake

T = TypeVar("T")

PREDICTOR_KINDS: tuple[str, ...] = ("ridge", "rf", "gbr", "mlp", "ensemble")
MAX_SEED = 2**32 - 1  # numpy and scikit-learn seeds are 32-bit
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
MIN_TRAIN_SAMPLES = 8  # a predictor's fit needs this many measured subnets (predictors.dataset)
MIN_HELD_OUT = 2  # and its quality report this many held out


def _supernet_spaces() -> list[str]:
    import search_spaces

    return list(search_spaces.SUPERNET_SPACES)


def _datasets() -> list[str]:
    from nas.data.kinds import DATASETS

    return list(DATASETS)


def _searchers() -> list[str]:
    import nas.search

    return nas.search.names()


@dataclass(frozen=True)
class SpaceSpec:
    """Which registered search space, with its build options."""

    name: str = spec_field(
        "tiny_cnn", choices=_supernet_spaces, doc="registered search space with a supernet"
    )
    options: Mapping[str, Any] = spec_field(
        default_factory=dict,
        doc="keyword options of the space's builder (search_spaces/<name>.py)",
    )

    def __post_init__(self) -> None:
        check_fields(self, "space.")
        self.build()  # bad options fail here, naming space.options.<key>

    def build(self):  # type: ignore[no-untyped-def]
        import search_spaces

        builder = search_spaces.REGISTRY[self.name]
        parameters = inspect.signature(builder).parameters
        hints = typing.get_type_hints(builder)
        for key, value in self.options.items():
            if key not in parameters:
                raise ConfigError(
                    f"space.options.{key} is not an option of space {self.name!r}; "
                    f"allowed options: {sorted(parameters)}"
                )
            check_value(f"space.options.{key}", value, hints.get(key, Any), Rule())
        try:
            return search_spaces.get(self.name, **dict(self.options))
        except (ConfigError, ValueError, TypeError, ArithmeticError) as exc:
            raise ConfigError(
                f"space.options={dict(self.options)!r} cannot build space {self.name!r}: {exc}"
            ) from exc


@dataclass(frozen=True)
class DataSpec:
    """Where images come from and how they are split; the sizes apply to every kind.

    ``fashion_mnist`` (Debian's ``dataset-fashion-mnist``, or ``path``) and ``digits``
    (scikit-learn) are built in. For ``fashion_mnist`` and ``idx``, ``val_size`` (unset: 5000)
    and ``calib_size`` (unset: 1000) images are held out of the official training file,
    ``train_size`` (all the rest when unset) trains, and the official test file is kept for
    reported numbers only. ``digits``, ``npz`` and ``folder`` have no official test file: a fixed
    15 % is the test split and the sizes are drawn from the rest (unset: 15 %, 10 % and all the
    rest, the default 60/10/15/15 shares). ``resolution`` is the side folder images are resized
    to; with a space of fixed resolution it must equal the space's (validation refuses a
    conflict), with a ``resolution`` dimension each subnet resizes them to its own.
    """

    kind: str = spec_field("fashion_mnist", choices=_datasets, doc="data set kind")
    path: str | None = spec_field(
        None, non_empty=True, doc="file or folder (required for idx, npz, folder)"
    )
    resolution: int = spec_field(
        32,
        low=1,
        high=1024,
        doc="side folder images are resized to (must equal a fixed-resolution space's)",
    )
    train_size: int | None = spec_field(
        None, low=1, high=10_000_000, doc="training images (unset: all not held out)"
    )
    val_size: int | None = spec_field(
        None,
        low=1,
        high=10_000_000,
        doc="selection (validation) images (unset: 5000 for fashion_mnist/idx, else 15 %)",
    )
    calib_size: int | None = spec_field(
        None,
        low=1,
        high=10_000_000,
        doc="images for BatchNorm re-calibration only (unset: 1000 for fashion_mnist/idx, "
        "else 10 %)",
    )

    def __post_init__(self) -> None:
        from nas.data.kinds import DATASETS_NEEDING_PATH

        check_fields(self, "data.")
        if self.kind in DATASETS_NEEDING_PATH and not self.path:
            raise ConfigError(f"data.path is required when data.kind={self.kind!r}")
        self._fill_idx_defaults()

    def _fill_idx_defaults(self) -> None:
        """The IDX kinds' unset sizes become their fixed defaults, as run records always held."""
        from nas.data.kinds import IDX_DEFAULT_CALIB, IDX_DEFAULT_VAL, IDX_KINDS

        if self.kind in IDX_KINDS:
            if self.val_size is None:
                object.__setattr__(self, "val_size", IDX_DEFAULT_VAL)
            if self.calib_size is None:
                object.__setattr__(self, "calib_size", IDX_DEFAULT_CALIB)

    def split_sizes(self):  # type: ignore[no-untyped-def]
        """The split sizes this spec asks for (``None``: the kind's default)."""
        from nas.data.datasets import SplitSizes

        return SplitSizes(val=self.val_size, calib=self.calib_size, train=self.train_size)


@dataclass(frozen=True)
class RaySpec:
    """Where work runs: ``address`` empty → a local Ray instance.

    ``cpus_per_worker`` is what each Ray Train worker reserves and the torch threads it uses.
    """

    address: str | None = spec_field(
        None, non_empty=True, doc="an existing Ray cluster (unset: a local Ray instance)"
    )
    num_workers: int = spec_field(1, low=1, high=1024, doc="Ray Train workers (DDP)")
    cpus_per_worker: int = spec_field(
        1, low=1, high=1024, doc="CPUs (torch threads) each worker reserves"
    )
    use_gpu: bool = spec_field(False, doc="one GPU per Ray Train worker (NCCL)")
    num_cpus: int | None = spec_field(
        None, low=1, high=65_536, doc="CPUs of the local Ray instance (unset: all)"
    )

    def __post_init__(self) -> None:
        check_fields(self, "ray.")


@dataclass(frozen=True)
class MeasureSpec:
    """Which targets to measure and how many subnets build the predictors' data set."""

    targets: tuple[str, ...] = spec_field(
        ("cpu_fp32",), non_empty=True, max_items=64, doc="hardware targets to measure"
    )
    n_samples: int = spec_field(
        60, low=2, high=100_000, doc="subnets measured to fit and test the predictors"
    )
    calib_images: int = spec_field(
        256, low=1, high=1_000_000, doc="images for BatchNorm re-calibration per subnet"
    )
    eval_split: str = spec_field(
        "val", choices=("val",), doc="selection split (the test split is never used to select)"
    )
    latency_repeats: int = spec_field(20, low=1, high=100_000, doc="timed runs per subnet")
    latency_warmup: int = spec_field(5, low=0, high=100_000, doc="untimed runs first")

    def __post_init__(self) -> None:
        check_fields(self, "measure.")
        _reject_duplicates("measure.targets", self.targets)


@dataclass(frozen=True)
class PredictorSpec:
    """Predictor kind and the held-out share used for its quality report."""

    kind: str = spec_field("gbr", choices=PREDICTOR_KINDS, doc="regressor of every predictor")
    test_fraction: float = spec_field(
        0.25,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        doc="share of measured subnets held out for the quality report",
    )

    def __post_init__(self) -> None:
        check_fields(self, "predictors.")


@dataclass(frozen=True)
class SearchSpec:
    """Objectives and constraints as strings (``"top1:max"``, ``"latency_ms@cpu_fp32 <= 5"``)."""

    algorithm: str = spec_field("portfolio", choices=_searchers, doc="searcher")
    objectives: tuple[str, ...] = spec_field(
        ("top1:max", "latency_ms@cpu_fp32:min"),
        max_items=8,
        doc="`metric:max` or `metric:min`, at least 2",
    )
    constraints: tuple[str, ...] = spec_field(
        (), max_items=64, doc="`metric <= x` or `metric >= x`, on measured values"
    )
    budget: int = spec_field(300, low=1, high=1_000_000, doc="evaluations the searcher makes")
    use_predictors: bool = spec_field(
        True, doc="search on predicted metrics (then measure the front), else on measured ones"
    )
    options: Mapping[str, Any] = spec_field(
        default_factory=dict,
        doc="the searcher's constructor keywords, e.g. `{pop_size = 24}` (checked against it)",
    )

    def __post_init__(self) -> None:
        import nas.search
        from nas.search.objectives import Constraint, Objective

        check_fields(self, "search.")
        nas.search.check_options(self.algorithm, self.options)
        if len(self.objectives) < 2:
            raise ConfigError(
                f"search.objectives={list(self.objectives)!r} needs at least 2 objectives"
            )
        for i, text in enumerate(self.objectives):
            _parse(f"search.objectives[{i}]", Objective.parse, text)
        for i, text in enumerate(self.constraints):
            _parse(f"search.constraints[{i}]", Constraint.parse, text)
        metrics = [Objective.parse(t).key for t in self.objectives]
        _reject_duplicates("search.objectives", metrics)


@dataclass(frozen=True)
class ExportSpec:
    """What to write for each Pareto-front subnet."""

    onnx: bool = spec_field(True, doc="write model.onnx beside the PyTorch weights")
    max_subnets: int = spec_field(8, low=1, high=1000, doc="most front subnets to export")
    measure_front: bool = spec_field(True, doc="re-measure front contenders in one session")

    def __post_init__(self) -> None:
        check_fields(self, "export.")


@dataclass(frozen=True)
class TrackingSpec:
    """Where a run is also logged for experiment trackers (off by default)."""

    mlflow: bool = spec_field(
        False,
        doc="log the run to MLflow: spec, per-epoch training metrics, measurements, search "
        "history, predictor quality, the exported front and its pictures (needs the "
        "`tracking` extra)",
    )
    mlflow_uri: str = spec_field(
        "",
        doc="MLflow tracking URI, e.g. http://host:5000 or sqlite:///path.db (empty: an SQLite "
        "store in the run directory, <output_dir>/mlflow/)",
    )
    experiment: str = spec_field("", doc="MLflow experiment name (empty: the spec's name)")

    def __post_init__(self) -> None:
        check_fields(self, "tracking.")
        if self.mlflow_uri and not self.mlflow:
            raise ConfigError(
                f"tracking.mlflow_uri={self.mlflow_uri!r} is set but tracking.mlflow is false; "
                "set tracking.mlflow = true to log there"
            )


@dataclass(frozen=True)
class TrainSpec:
    """Supernet training: the table is passed to ``nas.training.config.TrainConfig``."""

    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nas.training.config import TrainConfig

        TrainConfig.from_dict(self.options)  # bad keys and values fail at parse time


def _parse(key: str, parse: Callable[[str], object], text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _reject_duplicates(key: str, values: Sequence[object]) -> None:
    repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
    if repeated:
        raise ConfigError(f"{key} lists {repeated} more than once")


SECTIONS: dict[str, type] = {
    "space": SpaceSpec,
    "data": DataSpec,
    "train": TrainSpec,
    "ray": RaySpec,
    "measure": MeasureSpec,
    "predictors": PredictorSpec,
    "search": SearchSpec,
    "export": ExportSpec,
    "tracking": TrackingSpec,
}


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment: train → measure → fit predictors → search → export."""

    name: str = spec_field(
        "experiment",
        doc="run name (default: the spec file's name); letters, digits, '_', '.', '-'",
    )
    seed: int = spec_field(0, low=0, high=MAX_SEED, doc="seeds sampling, training and search")
    output_dir: str = spec_field(
        "runs/experiment", non_empty=True, doc="run directory (default runs/<name>)"
    )
    space: SpaceSpec = field(default_factory=SpaceSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    ray: RaySpec = field(default_factory=RaySpec)
    targets: tuple[HardwareTarget, ...] = field(default=())
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    predictors: PredictorSpec = field(default_factory=PredictorSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)

    def __post_init__(self) -> None:
        for key in ("name", "seed", "output_dir"):
            f = next(f for f in dataclasses.fields(self) if f.name == key)
            check_value(
                key, getattr(self, key), typing.get_type_hints(type(self))[key], f.metadata["rule"]
            )
        if not _NAME.match(self.name):
            raise ConfigError(
                f"name={self.name!r} must be 1-100 letters, digits, '_', '.' or '-', "
                "not starting with '.' or '-'"
            )
        self._check_targets()
        self._check_predictor_samples()

    def _check_targets(self) -> None:
        try:
            registry = default_registry().extended(self.targets)
        except ConfigError as exc:
            raise ConfigError(f"targets: {exc}") from exc
        for i, name in enumerate(self.measure.targets):
            if name not in registry:
                raise ConfigError(
                    format_choice_error(f"measure.targets[{i}]", name, registry.names())
                )

    def _check_predictor_samples(self) -> None:
        """The predictors stage splits ``measure.n_samples``: both parts must be big enough."""
        n = self.measure.n_samples
        held_out = math.ceil(n * self.predictors.test_fraction)
        if n - held_out < MIN_TRAIN_SAMPLES or held_out < MIN_HELD_OUT:
            raise ConfigError(
                f"measure.n_samples={n} with predictors.test_fraction="
                f"{self.predictors.test_fraction:g} leaves {n - held_out} subnets to fit and "
                f"{held_out} to test; the predictors need at least {MIN_TRAIN_SAMPLES} and "
                f"{MIN_HELD_OUT} (raise measure.n_samples)"
            )

    # -- parsing -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentSpec:
        """Parse and validate a TOML file (UTF-8 text of at most MAX_SPEC_BYTES)."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"experiment spec {str(path)!r} does not exist")
        if not path.is_file():
            raise ConfigError(f"experiment spec {str(path)!r} is not a file")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"experiment spec {str(path)!r} cannot be read: {exc.strerror}"
            ) from exc
        if len(raw) > MAX_SPEC_BYTES:
            raise ConfigError(
                f"experiment spec {str(path)!r} has {len(raw)} bytes; at most {MAX_SPEC_BYTES}"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"experiment spec {str(path)!r} is not UTF-8 text (byte {exc.start}); "
                "TOML files are UTF-8"
            ) from exc
        try:
            return cls.from_toml_text(text, default_name=path.stem)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @classmethod
    def from_toml_text(cls, text: str, *, default_name: str = "experiment") -> ExperimentSpec:
        """Parse and validate TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}") from exc
        except RecursionError as exc:
            raise ConfigError("invalid TOML: nested too deeply") from exc
        return cls.from_dict(data, default_name=default_name)

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
                    options = value.get("options", {})
                    if not isinstance(options, Mapping):
                        raise ConfigError(f"space.options={options!r} must be a table")
                    kwargs[key] = SpaceSpec(
                        name=_coerce("space.name", value.get("name", "tiny_cnn"), str),
                        options=_tuples(dict(options)),
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
        if isinstance(kwargs["name"], str):
            kwargs.setdefault("output_dir", f"runs/{kwargs['name']}")
        return cls(**kwargs)


def spec_schema() -> list[tuple[str, Any, Rule, Any]]:
    """Every scalar spec key as ``(key, type hint, rule, default)``, in file order.

    The validator, the generated bad-input tests and the spec reference all read this list,
    so a new key is checked, fuzzed and documented from its declaration alone.
    """
    from nas.training.config import TrainConfig

    def entries(cls: type, prefix: str) -> list[tuple[str, Any, Rule, Any]]:
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            if f.name in SECTIONS or f.name == "targets":
                continue
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            rows.append((f"{prefix}{f.name}", hints[f.name], rule_of(f), default))
        return rows

    rows = entries(ExperimentSpec, "")
    for section, cls in SECTIONS.items():
        rows += entries(TrainConfig if cls is TrainSpec else cls, f"{section}.")
    rows += entries(HardwareTarget, "targets[].")
    return rows


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
