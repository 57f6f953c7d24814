"""A spec resolved against the registries, and every check that needs no data or weights.

Kept apart from the stages (and free of torch, Ray and pandas) so ``nas validate`` answers in
well under a second; :mod:`nas.pipeline` runs the stages on a :class:`ResolvedExperiment`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, format_choice_error
from nas.measure.targets import HardwareTarget, TargetRegistry, default_registry
from nas.search.objectives import SearchProblem, split_metric_key
from nas.space import Choice, Numeric, SearchSpace
from nas.spec.config import ExperimentSpec

COST_METRICS: tuple[str, ...] = ("params_m", "macs_m", "model_size_bytes")
ACCURACY_METRIC = "top1"  # on the selection split (measure.eval_split)
TEST_ACCURACY_METRIC = "top1_test"  # on the test split, for exported subnets only
LATENCY_METRIC = "latency_ms"
# Searchers whose ask is costly (CPU-seconds per ask on 2 cores, benchmarks/README_search.md).
SLOW_ASK_SEARCHERS: dict[str, str] = {"optuna-gp": "1-17", "surrogate": "about 2"}
LOW_BIT_PRECISIONS: tuple[str, ...] = ("int8", "w4", "mixed")  # targets that run low bits
SIZE_METRIC = "model_size_bytes"  # the only cost that falls with fewer bits
OWN_DATA_KINDS: tuple[str, ...] = ("idx", "npz")  # user images kept at their own side


@dataclass(frozen=True)
class ResolvedExperiment:
    """A spec with its space, targets and search problem built and cross-checked."""

    spec: ExperimentSpec
    space: SearchSpace
    targets: TargetRegistry
    measured_targets: tuple[HardwareTarget, ...]
    problem: SearchProblem
    root: Path

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    @functools.cached_property
    def train(self) -> Any:
        """The validated ``TrainConfig`` of ``[train]``, parsed once (on first use)."""
        return train_config(self.spec, space=self.space)


def available_metrics(targets: Sequence[HardwareTarget]) -> list[str]:
    """Metric keys the pipeline can provide: accuracy, analytic costs, latency per target."""
    return [ACCURACY_METRIC, *COST_METRICS, *(f"{LATENCY_METRIC}@{t.name}" for t in targets)]


def resolve(spec: ExperimentSpec, *, output_dir: str | Path | None = None) -> ResolvedExperiment:
    """Build and cross-check everything the spec names, before any work starts.

    Raises:
        ConfigError: unknown target, objective or constraint on a metric nobody measures.
    """
    space = spec.space.build()
    registry = default_registry().extended(spec.targets)
    measured = registry.resolve(spec.measure.targets)
    problem = SearchProblem.from_strings(space, spec.search.objectives, spec.search.constraints)
    provided = available_metrics(measured)
    for key in problem.metric_keys:
        where = _spec_key_using(spec, key)
        _, target = split_metric_key(key)
        if target is not None and target not in spec.measure.targets:
            raise ConfigError(
                f"{where}: metric {key!r} is on target {target!r}, which measure.targets does "
                f"not measure; allowed targets: {list(spec.measure.targets)}"
            )
        if key not in provided:
            raise ConfigError(format_choice_error(f"{where}: metric", key, provided))
    check_constraints_satisfiable(problem)
    check_target_resolutions(space, measured, spec.measure.targets)
    check_folder_resolution(space, spec.data)
    if spec.measure.n_samples > space.size():
        raise ConfigError(
            f"measure.n_samples={spec.measure.n_samples} exceeds the {space.size()} subnets of "
            f"search space {space.name!r}"
        )
    root = Path(output_dir if output_dir is not None else spec.output_dir)
    check_output_dir(root, key="--output-dir" if output_dir is not None else "output_dir")
    return ResolvedExperiment(spec, space, registry, measured, problem, root)


def _spec_key_using(spec: ExperimentSpec, metric_key: str) -> str:
    """``search.objectives[i]`` or ``search.constraints[i]``: where the spec names a metric."""
    from nas.search.objectives import Constraint, Objective

    for i, text in enumerate(spec.search.objectives):
        if Objective.parse(text).key == metric_key:
            return f"search.objectives[{i}]"
    for i, text in enumerate(spec.search.constraints):
        if Constraint.parse(text).key == metric_key:
            return f"search.constraints[{i}]"
    return "search"


def check_output_dir(root: Path, *, key: str = "output_dir") -> None:
    """Refuse a run directory that cannot be created: an existing file, or a file above it."""
    if str(root).strip() in ("", "."):
        raise ConfigError(f"{key}={str(root)!r} must name a directory of its own")
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            what = "is" if path == root else f"lies under {str(path)!r}, which is"
            raise ConfigError(f"{key}={str(root)!r} {what} an existing file, not a directory")
        if path.exists():
            break


def check_constraints_satisfiable(problem: SearchProblem) -> None:
    """Refuse constraints that no subnet can meet, before any work starts.

    Bounds on one metric that contradict each other, a latency bound at or below zero, and an
    analytic cost bound beyond the space's smallest or largest subnet (costs grow with every
    choice) are known to be infeasible without measuring anything.

    Raises:
        InfeasibleError: naming the constraint and the reachable range.
    """
    from nas.search.front import InfeasibleError

    by_key: dict[str, list[Any]] = {}
    for c in problem.constraints:
        by_key.setdefault(c.key, []).append(c)
    space = problem.space
    for key, group in by_key.items():
        uppers = [c.upper for c in group if c.upper is not None]
        lowers = [c.lower for c in group if c.lower is not None]
        if uppers and lowers and max(lowers) > min(uppers):
            raise InfeasibleError(
                f"search.constraints on {key!r} contradict each other: {key} >= {max(lowers):g} "
                f"and {key} <= {min(uppers):g}"
            )
        metric, _ = split_metric_key(key)
        if metric == LATENCY_METRIC and uppers and min(uppers) <= 0:
            raise InfeasibleError(
                f"search.constraints: {key} <= {min(uppers):g} cannot hold (latency is positive)"
            )
        if metric in COST_METRICS:
            from nas.measure.cost import compute_cost  # torch: only when a cost bound is set

            low = compute_cost(space, space.smallest()).metrics()[metric]
            high = compute_cost(space, space.largest()).metrics()[metric]
            if uppers and min(uppers) < low:
                raise InfeasibleError(
                    f"search.constraints: {key} <= {min(uppers):g} is below the smallest subnet "
                    f"of {space.name!r} ({key}={low:.4g}); reachable range [{low:.4g}, {high:.4g}]"
                )
            if lowers and max(lowers) > high:
                raise InfeasibleError(
                    f"search.constraints: {key} >= {max(lowers):g} is above the largest subnet "
                    f"of {space.name!r} ({key}={high:.4g}); "
                    f"reachable range [{low:.4g}, {high:.4g}]"
                )


def check_target_resolutions(
    space: SearchSpace, targets: Sequence[HardwareTarget], names: Sequence[str]
) -> None:
    """A space that searches the input resolution decides it per subnet, not per target."""
    if "resolution" not in space.names:
        return
    for i, target in enumerate(targets):
        if target.resolution is not None:
            raise ConfigError(
                f"measure.targets[{i}] ({names[i]!r}) has resolution={target.resolution}, but "
                f"search space {space.name!r} searches the input resolution (dimension "
                f"'resolution', options {_values(space.dim('resolution'))}); leave the "
                "target's resolution unset"
            )


def check_data_fits(space: SearchSpace, data: Any, *, kind: str | None = None) -> None:
    """The data's channels and classes fit the space (``data``: loaded, or its facts).

    For ``kind`` ``idx`` or ``npz`` (images kept at their own side) a space of fixed resolution
    must also have that side, or training would see one side and latency another.
    """
    from nas.supernets import arch_of

    arch = arch_of(space)
    if data.in_channels != arch.in_channels or data.num_classes > arch.num_classes:
        raise ConfigError(
            f"data set {data.name!r} has {data.in_channels} channels and {data.num_classes} "
            f"classes; search space {space.name!r} expects {arch.in_channels} channels and at "
            f"most {arch.num_classes} classes (set space.options in_channels/num_classes)"
        )
    side = getattr(data, "resolution", None)
    fixed = _fixed_resolution(space)
    if kind in OWN_DATA_KINDS and side is not None and fixed is not None and side != fixed:
        raise ConfigError(
            f"data.kind={kind!r}: data set {data.name!r} holds {side}×{side} images but search "
            f"space {space.name!r} runs at resolution {fixed} (space.options.resolution), which "
            f"latency, costs and the exported model assume; set space.options.resolution = "
            f"{side} or give {fixed}×{fixed} images"
        )


def _fixed_resolution(space: SearchSpace) -> int | None:
    """The input side of a space without a ``resolution`` dimension (``None``: it searches one)."""
    if "resolution" in space.names:
        return None
    arch = space.metadata.get("arch")
    return getattr(arch, "resolution", None)


def check_folder_resolution(space: SearchSpace, data: Any) -> None:
    """Folder images are resized to ``data.resolution``: a fixed-resolution space must agree.

    Training and accuracy would see ``data.resolution`` while latency, costs and the exported
    graph assume the space's side, so a conflict is refused rather than one side silently
    winning. A space with a ``resolution`` dimension resizes the images to each subnet's side.
    """
    fixed = _fixed_resolution(space)
    if data.kind != "folder" or fixed is None or data.resolution == fixed:
        return
    raise ConfigError(
        f"data.resolution={data.resolution} (the side folder images are resized to) conflicts "
        f"with space.options.resolution={fixed} of search space {space.name!r} (the side "
        f"latency, costs and the exported model assume); set data.resolution = {fixed} or "
        f"space.options.resolution = {data.resolution}"
    )


def _searched_low_bits(space: SearchSpace) -> list[int]:
    """Bit-widths below 32 that any ``*.bits`` dimension of ``space`` offers."""
    bits = {
        int(b)
        for name in space.names
        if name.rsplit(".", 1)[-1] == "bits"
        for b in getattr(space.dim(name), "options", ())
    }
    return sorted(b for b in bits if b < 32)


def spec_warnings(exp: ResolvedExperiment) -> list[str]:
    """One-line warnings on a valid spec that will not do what it seems to (``nas validate``).

    Printed only once every check has passed, so a refused spec still gets one error line.
    """
    note = unused_bits_note(exp.space, exp.measured_targets, exp.problem.metric_keys)
    return [note] if note else []


def unused_bits_note(
    space: SearchSpace, targets: Sequence[HardwareTarget], metric_keys: Sequence[str]
) -> str | None:
    """A warning when low bits are searched but nothing measured can gain from them.

    On fp32 targets fewer bits save no latency and only cost (fake-quantized) accuracy, and each
    card then carries two test accuracies: the supernet's at the subnet's bits, the target's in
    fp32. Low bits pay off on an int8/w4/mixed target or a model_size_bytes objective.
    """
    low = _searched_low_bits(space)
    sized = any(split_metric_key(k)[0] == SIZE_METRIC for k in metric_keys)
    if not low or sized or any(t.precision in LOW_BIT_PRECISIONS for t in targets):
        return None
    return (
        f"space {space.name!r} searches bits {low} but every measured target is fp32 and no "
        f"objective or constraint is on {SIZE_METRIC}: low bits gain nothing and cards carry "
        "two test accuracies (top1_test fake-quantized, top1_test@<target> in fp32); set "
        "space.options.bits = [32], or add an int8/w4/mixed target or a model_size_bytes "
        "objective"
    )


def train_config(spec: ExperimentSpec, *, space: SearchSpace | None = None) -> Any:
    """The spec's ``[train]`` table as a validated ``TrainConfig`` (seeded by the spec).

    ``space`` is the spec's built space when the caller has it (it is built once, then).
    """
    from nas.training.config import TrainConfig

    config = TrainConfig.from_dict({"seed": spec.seed, **dict(spec.train.options)})
    built = space
    if config.reorder != "none":
        from nas.supernets import family_of

        built = built or spec.space.build()
        family = family_of(built)
        if not family.reorders:
            raise ConfigError(
                f"train.reorder={config.reorder!r} is not supported by the {family.name!r} "
                f"supernet family of search space {spec.space.name!r}; allowed: 'none'"
            )
    if config.zero_init_residual:
        from nas.supernets import family_of

        built = built or spec.space.build()
        family = family_of(built)
        if not hasattr(family.supernet_class, "zero_init_residuals"):
            raise ConfigError(
                f"train.zero_init_residual=true is not supported by the {family.name!r} "
                f"supernet family of search space {spec.space.name!r}; allowed: false"
            )
    if config.warm_start and not (Path(config.warm_start) / "state.json").is_file():
        raise ConfigError(
            f"train.warm_start={config.warm_start!r} is not a training checkpoint directory "
            "(no state.json there); give one like <run>/train/checkpoints/epoch_0006"
        )
    workers = spec.ray.num_workers
    if config.batch_size % (workers * config.micro_batches):
        raise ConfigError(
            f"train.batch_size={config.batch_size} must be divisible by ray.num_workers="
            f"{workers} × train.micro_batches={config.micro_batches}"
        )
    return config


def _values(dim: Choice | Numeric) -> list[object]:
    """A dimension's options, or ``[low, high]`` of a numeric one, for a message."""
    return [dim.low, dim.high] if isinstance(dim, Numeric) else list(dim.options)
