"""Plain functions behind ``nas predict``, ``nas best`` and ``nas serve``.

``nas/cli.py`` parses argv and calls these; they take plain arguments and return plain data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from predictors.bundle import Predictors


def parse_configs(text: str) -> list[dict[str, Any]]:
    r"""Configs from a ``--config`` argument: a JSON object, a JSON list, or JSON lines.

    Example:
        >>> parse_configs('{"a": 1}')
        [{'a': 1}]
        >>> parse_configs('{"a": 1}\n{"a": 2}\n')
        [{'a': 1}, {'a': 2}]
    """
    stripped = text.strip()
    try:
        data = json.loads(stripped)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        items = []
        for lineno, line in enumerate(stripped.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config line {lineno} is not valid JSON: {exc.msg}") from exc
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(
                f"configs[{i}] must be a JSON object of dimension name -> value, "
                f"got {type(item).__name__}"
            )
    return items


def predict_command(
    predictors_dir: str | os.PathLike[str],
    configs: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] | None = None,
    return_std: bool = False,
) -> list[dict[str, Any]]:
    """Predict every metric of the bundle for ``configs``.

    Returns:
        One ``{"config": {...}, "predictions": {metric: value}}`` per config, in input order.
    """
    bundle = Predictors.load(Path(predictors_dir))
    predictions = bundle.predict(configs, metrics=metrics, return_std=return_std)
    return [
        {"config": bundle.space.validate(c).to_dict(), "predictions": p}
        for c, p in zip(configs, predictions, strict=True)
    ]


def best_command(
    predictors_dir: str | os.PathLike[str],
    target: str,
    max_latency_ms: float,
    *,
    objective: str = "top1",
) -> dict[str, Any] | None:
    """Best subnet of the bundle's Pareto archive on ``target`` within ``max_latency_ms``.

    Returns:
        ``{"config": {...}, "metrics": {...}}``, or ``None`` when nothing meets the bound.
    """
    bundle = Predictors.load(Path(predictors_dir))
    return bundle.best(target=target, max_latency_ms=max_latency_ms, objective=objective)


def serve(
    predictors_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Serve the bundle over HTTP with uvicorn until interrupted."""
    import uvicorn

    from predictors.service import create_app

    if not 0 < int(port) < 65536:
        raise ConfigError(f"port={port!r} must be in 1..65535")
    app = create_app(Predictors.load(Path(predictors_dir)))
    uvicorn.run(app, host=host, port=int(port), log_level="warning")
