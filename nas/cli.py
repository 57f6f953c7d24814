"""Command line: ``nas run SPEC`` and the stages, predictor queries, serving and cluster launch.

This is the only module that reads argv, files named on the command line and the environment;
everything below it receives plain arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from nas.errors import (
    ConfigError,
    IncompatibleArtifactError,
    RunStopped,
    StorageError,
    UnsafeFileError,
)

STAGE_COMMANDS = {
    "train": "train",
    "measure": "measure",
    "fit": "predictors",
    "search": "search",
    "export": "export",
}


def _load_spec(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from nas.spec.config import ExperimentSpec

    spec = ExperimentSpec.from_toml(args.spec)
    if getattr(args, "address", None):
        spec = dataclasses.replace(spec, ray=dataclasses.replace(spec.ray, address=args.address))
    if getattr(args, "workers", None) is not None:  # --workers 0 is an error, not "unset"
        spec = dataclasses.replace(
            spec, ray=dataclasses.replace(spec.ray, num_workers=args.workers)
        )
    return spec


def _cmd_run(args: argparse.Namespace) -> int:
    from nas.pipeline import STAGE_FUNCTIONS, run_experiment

    spec = _load_spec(args)
    stages = list(STAGE_FUNCTIONS)
    if args.command in STAGE_COMMANDS:
        stages = stages[: stages.index(STAGE_COMMANDS[args.command]) + 1]
    exp = run_experiment(spec, stages=stages, output_dir=args.output_dir, force=args.force)
    if stages[-1] == "export":
        _print_summary(exp.root)
    print(f"outputs: {exp.root}")
    from nas.spec.resolve import spec_warnings

    for line in spec_warnings(exp):  # what `nas validate` warned of, beside the results
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _print_summary(root: Path) -> None:
    import csv

    from nas.artifacts.export import exported_paths, read_card
    from nas.pipeline.console import front_summary

    front = root / "export" / "front.csv"
    if not front.exists():
        return
    with open(front, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    intro = (
        "Pareto front: non-dominated among every subnet measured in the run. top1 (val) is on "
        "the selection split, top1_test on the test split (never used to select), "
        "top1_test@<target> as that target's runtime runs the model where it differs; "
        "[95 % interval]; every column: export/front.csv"
    )
    print("\n" + textwrap.fill(intro, width=100))
    for line in front_summary(rows):
        print(line)
    cards = exported_paths(root / "export")
    if cards:
        splits = read_card(cards[0]).get("accuracy", {}).get("splits", "not recorded")
        print(textwrap.fill(f"splits: {splits}", width=100, subsequent_indent="  "))


def _cmd_validate(args: argparse.Namespace) -> int:
    from nas.data.facts import data_facts
    from nas.spec.resolve import check_data_fits, resolve, spec_warnings

    spec = _load_spec(args)
    exp = resolve(spec)
    _ = exp.train
    facts = data_facts(spec.data)  # headers, labels and checksums: no full load
    if facts is None:
        from nas.pipeline import RunContext

        _ = RunContext(exp).data  # npz and image folders: only loading them checks them
    else:
        check_data_fits(exp.space, facts, kind=spec.data.kind)
    from nas.pipeline.run_dir import refuse_stale

    refuse_stale(exp.root, spec)  # `nas run` would refuse a changed spec on this output_dir
    print(f"{args.spec}: valid")
    for line in spec_warnings(exp):  # after every check, so a refusal stays one error line
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from predictors.apps.commands import parse_configs, predict_command

    if (args.config is None) == (args.configs is None):
        raise ConfigError("give exactly one of --config JSON or --configs FILE.jsonl")
    text = args.config if args.config is not None else Path(args.configs).read_text()
    rows = predict_command(
        args.predictors, parse_configs(text), return_std=args.std, base=args.base
    )
    for row in rows:
        print(json.dumps(_rounded(row)))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from predictors.apps.commands import best_command

    best = best_command(
        args.predictors, args.target, args.max_latency_ms, objective=args.objective
    )
    if best is None:
        print(
            f"no subnet in the archive meets latency_ms@{args.target} <= {args.max_latency_ms}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(_rounded(best), indent=2))
    return 0


def _rounded(value: object, digits: int = 6) -> object:
    """Floats to ``digits`` significant digits (what a metric means; no ``83.42500000000001``).

    >>> _rounded({"top1": 83.42500000000001, "latency_ms": [4.9227644999999995], "n": 3})
    {'top1': 83.425, 'latency_ms': [4.92276], 'n': 3}
    """
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from predictors.apps.commands import serve

    serve(
        args.predictors,
        host=args.host,
        port=args.port,
        bank=args.bank,
        devices_dir=args.devices_dir,
    )
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from nas.measure.targets import default_registry

    if args.spec is None:
        for target in default_registry():
            print(json.dumps(dataclasses.asdict(target)))
        return 0
    from nas.spec.config import ExperimentSpec

    spec = ExperimentSpec.from_toml(args.spec)
    declared = {t.name for t in spec.targets}
    for target in default_registry().extended(spec.targets):
        print(
            json.dumps(
                dataclasses.asdict(target)
                | {
                    "declared_in": "spec" if target.name in declared else "built-in",
                    "measured": target.name in spec.measure.targets,
                }
            )
        )
    return 0


def _cmd_space(args: argparse.Namespace) -> int:
    from nas.space_summary import build_named_space, format_summary, space_summary

    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--options is not valid JSON: {exc.msg}") from exc
    if not isinstance(options, dict):
        raise ConfigError(f"--options={args.options!r} must be a JSON object")
    summary = space_summary(build_named_space(args.name, options))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from nas.pipeline.run_status import format_status, run_status

    if args.watch is not None and args.watch <= 0:
        raise ConfigError(f"--watch={args.watch} must be a positive number of seconds")
    tty = sys.stdout.isatty()
    try:
        while True:
            status = run_status(Path(args.output_dir))
            text = json.dumps(status, default=str) if args.json else format_status(status)
            if args.watch is not None and tty and not args.json:
                text = "\x1b[H\x1b[2J" + text  # redraw in place on a terminal
            print(text, flush=True)
            if args.watch is None or not status["running"]:
                return 0  # one look, or the run is no longer live: the last view stays
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the watcher leaves; the run goes on
        return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from nas.pipeline.compare import compare_runs, format_comparison, plot_comparison

    result = compare_runs(
        [Path(r) for r in args.runs], reference_point=args.reference_point or None
    )
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    if args.plot:
        print(f"picture: {plot_comparison(result, Path(args.plot))}", file=sys.stderr)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from nas.pipeline.run_dir import request_stop
    from nas.pipeline.run_status import lock_holder, require_run

    root = require_run(Path(args.run), key="RUN")
    holder = lock_holder(root)
    if holder is None:
        raise ConfigError(f"RUN={str(root)!r} has no live run (nothing to stop)")
    request_stop(root)
    print(
        f"stop requested for {root} ({holder}): it ends at its next clean point (after the "
        "training epoch's checkpoint, the stored measurement or the stage in progress); "
        "`nas run` with the same spec resumes"
    )
    if not args.wait:
        return 0
    while lock_holder(root) is not None:
        time.sleep(0.5)
    print(f"{root}: stopped")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from nas.pipeline.run_status import format_runs

    print(format_runs(Path(args.folder)))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from nas.execution.ray_jobs import submit_experiment
    from nas.spec.config import ExperimentSpec

    spec = ExperimentSpec.from_toml(args.spec)  # a bad spec fails here, before any upload
    job = submit_experiment(
        args.address,
        args.spec,
        output_dir=args.output_dir or spec.output_dir,
        working_dir=args.working_dir,
        wait=not args.no_wait,
    )
    print(f"job {job.job_id}: {job.status}" + (f" ({job.message})" if job.message else ""))
    if job.outputs is not None:
        print(f"outputs: {job.outputs}")
    return 0 if job.succeeded or args.no_wait else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Weight-sharing NAS: train, measure, predict, search, export."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def spec_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("spec", help="experiment spec (TOML), e.g. experiments/default.toml")
        p.add_argument("--output-dir", help="overrides the spec's output_dir")
        p.add_argument("--address", help="Ray cluster address (overrides ray.address)")
        p.add_argument("--workers", type=int, help="Ray Train workers (overrides ray.num_workers)")
        p.add_argument("--force", action="store_true", help="redo stages even if done")
        p.set_defaults(func=_cmd_run)
        return p

    spec_command("run", "all stages: train → measure → fit → search → export")
    spec_command("train", "train the supernet (Ray Train)")
    spec_command("measure", "train, then measure the predictors' data set")
    spec_command("fit", "… then fit the predictors")
    spec_command("search", "… then search and measure the front")
    spec_command("export", "… then export the Pareto front")
    p = sub.add_parser("validate", help="check a spec without running anything")
    p.add_argument("spec")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("predict", help="predict metrics of configs with a predictor bundle")
    p.add_argument("--predictors", required=True, help="bundle directory")
    p.add_argument("--config", help="one config as JSON, or a JSON list of configs")
    p.add_argument("--configs", help="a JSONL file, one config per line")
    p.add_argument("--std", action="store_true", help="add uncertainty where available")
    p.add_argument(
        "--base",
        help="fill the dimensions a config leaves out from: smallest, largest, or a config key",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("best", help="best archived subnet under a latency bound")
    p.add_argument("--predictors", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--max-latency-ms", type=float, required=True)
    p.add_argument("--objective", default="top1")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("serve", help="serve a predictor bundle over HTTP (FastAPI)")
    p.add_argument("--predictors", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--bank", default=None, help="device bank CSV that POST /devices fits new devices from"
    )
    p.add_argument(
        "--devices-dir", default=None, help="folder that keeps added devices across restarts"
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("space", help="a search space's dimensions, values, smallest/largest")
    p.add_argument("name", help="registered space, e.g. fashion_cnn")
    p.add_argument("--options", help="builder options as JSON, e.g. '{\"bits\": [8, 32]}'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_space)

    p = sub.add_parser("status", help="stages, progress, counts and front of a run directory")
    p.add_argument("output_dir", help="a run directory, e.g. runs/default")
    p.add_argument("--json", action="store_true", help="print JSON (with --watch: one per line)")
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=5.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 5) while the run is live; ends when it is not",
    )
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("compare", help="fronts of several runs (or seeds) side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run directories")
    p.add_argument(
        "--reference-point",
        type=float,
        nargs="+",
        help="hypervolume reference point, one value per objective (default: the union's nadir "
        "pushed out by 10 %% of its range)",
    )
    p.add_argument("--plot", help="write the fronts in one picture (PNG) here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("stop", help="stop a live run at its next clean point (resumable)")
    p.add_argument("run", metavar="RUN", help="the run directory of a live run")
    p.add_argument("--wait", action="store_true", help="return once the run has stopped")
    p.set_defaults(func=_cmd_stop)

    p = sub.add_parser("runs", help="list the run directories under a folder")
    p.add_argument("folder", nargs="?", default="runs", help="default: runs")
    p.set_defaults(func=_cmd_runs)

    from predictors.apps.transfer_cli import add_transfer_parser

    add_transfer_parser(sub)

    p = sub.add_parser("targets", help="list the hardware targets (built-in, or a spec's)")
    p.add_argument(
        "--spec",
        help="also the targets this spec declares, each marked with where it is declared and "
        "whether the spec measures it",
    )
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser("submit", help="run `nas run SPEC` as a Ray job on a remote cluster")
    p.add_argument("spec")
    p.add_argument("--address", required=True, help="Ray dashboard address, http://head:8265")
    p.add_argument("--working-dir", default=".", help="uploaded as the job's working dir")
    p.add_argument("--output-dir", help="where the run comes back (default: spec's output_dir)")
    p.add_argument(
        "--no-wait", action="store_true", help="print the job id and return; outputs stay there"
    )
    p.set_defaults(func=_cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nas`` command; user errors exit with status 2 and one message."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, IncompatibleArtifactError, UnsafeFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # the run directory could not be written; what was, holds
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RunStopped as exc:  # `nas stop` asked for it; the run resumes where it stopped
        print(f"stopped: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # the reader (`| head`) left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
