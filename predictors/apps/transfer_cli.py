"""``nas transfer``: choose reference architectures, fit a new device, predict with it.

Files are CSV: a *bank* has a ``config`` column (a JSON object per architecture) and one
``lat_<device>`` column per device (milliseconds); *measurements* have ``config`` and
``latency_ms``. ``nas/cli.py`` adds the subcommand with :func:`add_transfer_parser`; imports of
the fitting code wait until a subcommand runs, so ``nas --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from predictors.transfer.csv_files import read_bank_csv, read_measurements_csv


def _space(args: argparse.Namespace) -> Any:
    import search_spaces

    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise ConfigError(f"--options={args.options!r} must be a JSON object")
    return search_spaces.get(args.space, **options)


def _cmd_references(args: argparse.Namespace) -> int:
    bank = read_bank_csv(args.bank, _space(args))
    for config in bank.references(args.n, seed=args.seed):
        print(config.to_json())
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from predictors.transfer.few_shot import fit_transfer
    from predictors.transfer.persistence import save_transfer

    space = _space(args)
    bank = read_bank_csv(args.bank, space)
    measurements = read_measurements_csv(args.measurements)
    predictor = fit_transfer(bank, measurements, target=args.target, space=space)
    directory = save_transfer(predictor, args.out)
    summary = {
        "saved": str(directory),
        "name": predictor.name,
        "n_train": predictor.n_train,
        "alpha": predictor.alpha,
        "lam": predictor.lam,
        "representation": predictor.representation,
        "device_weights": predictor.device_weights(),
        "leave_one_out": predictor.quality.to_dict() if predictor.quality else None,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from predictors.apps.commands import parse_configs
    from predictors.transfer.persistence import load_transfer

    if (args.config is None) == (args.configs is None):
        raise ConfigError("transfer predict: give exactly one of --config and --configs")
    predictor = load_transfer(args.predictor)
    text = args.config if args.config is not None else Path(args.configs).read_text()
    configs = parse_configs(text)
    for config, value in zip(configs, predictor.predict(configs), strict=True):
        print(json.dumps({"config": config, "predictions": {predictor.name: float(value)}}))
    return 0


def add_transfer_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``transfer {references,fit,predict}`` to the subparsers ``sub`` of ``nas``."""
    parser = sub.add_parser("transfer", help="latency predictor for a new device from a few runs")
    actions = parser.add_subparsers(dest="transfer_command", required=True)

    def space_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bank", required=True, help="bank CSV: config, lat_<device>...")
        p.add_argument("--space", required=True, help="registered space, e.g. nas_bench_201")
        p.add_argument("--options", help="space builder options as JSON")

    p = actions.add_parser("references", help="architectures to measure on the new device")
    space_args(p)
    p.add_argument("-n", type=int, default=10, help="how many (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_references)

    p = actions.add_parser("fit", help="fit the new device from its measurements and the bank")
    space_args(p)
    p.add_argument("--measurements", required=True, help="CSV: config, latency_ms")
    p.add_argument("--target", required=True, help="name of the new device")
    p.add_argument("--out", required=True, help="directory to save the predictor in")
    p.set_defaults(func=_cmd_fit)

    p = actions.add_parser("predict", help="predict latency with a saved transfer predictor")
    p.add_argument("--predictor", required=True, help="directory written by `transfer fit`")
    p.add_argument("--config", help="one config as JSON, or a JSON list of configs")
    p.add_argument("--configs", help="a JSONL file, one config per line")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``transfer`` alone, as ``nas`` would: ``python -m predictors.apps.transfer_cli fit``."""
    import sys

    from nas.errors import IncompatibleArtifactError, UnsafeFileError

    root = argparse.ArgumentParser(prog="nas")
    add_transfer_parser(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["transfer", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except (ConfigError, IncompatibleArtifactError, UnsafeFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
