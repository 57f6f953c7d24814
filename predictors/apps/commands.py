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
from predictors.bundle import Predictors, load_archive


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
    base: str | None = None,
) -> list[dict[str, Any]]:
    """Predict every metric of the bundle for ``configs``.

    Args:
        predictors_dir: A saved bundle (``<run>/predictors/bundle``).
        configs: Configs as plain mappings, complete unless ``base`` is given.
        metrics: Metrics to predict (default: all of the bundle's).
        return_std: Add ``<metric>_std`` where the predictor has an uncertainty.
        base: Complete partial configs from ``smallest``, ``largest`` or an archived config key.

    Returns:
        One ``{"config": {...}, "predictions": {metric: value}}`` per config, in input order.
    """
    from predictors.partial import complete

    bundle = Predictors.load(Path(predictors_dir))
    configs = complete(bundle, configs, base)
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
        ``{"config_key", "config", "metrics", "export_dir"}`` (``export_dir``: the exported
        subnet's directory when the bundle sits in a run directory, else ``None``), or ``None``
        when nothing meets the bound.

    The answer is the archive's, so the models are checked but not rebuilt
    (:func:`~predictors.bundle.load_archive`).
    """
    bundle = load_archive(Path(predictors_dir))
    best = bundle.best(target=target, max_latency_ms=max_latency_ms, objective=objective)
    if best is None:
        return None
    key = bundle.space.validate(best["config"]).key
    # A run directory holds <run>/predictors/bundle and <run>/export/subnet_XX_<key>/.
    exports = sorted((Path(predictors_dir).resolve().parent.parent / "export").glob(f"*_{key}"))
    export_dir = str(exports[0]) if exports and (exports[0] / "model_card.json").exists() else None
    return {"config_key": key, **best, "export_dir": export_dir}


def serve(
    predictors_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_batch: int | None = None,
    max_body_bytes: int | None = None,
    body_timeout: float | None = None,
    max_header_bytes: int | None = None,
    header_timeout: float | None = None,
    timeout_keep_alive: int | None = None,
    bank: str | os.PathLike[str] | None = None,
    devices_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Serve the bundle over HTTP with uvicorn until interrupted.

    ``bank`` (a bank CSV, as ``nas transfer`` reads) is the device bank that new devices are
    fitted from (``PUT /bank`` replaces it); ``devices_dir`` keeps added devices across restarts.

    The limits bound what one client can hold of the server; ``None`` keeps the default of
    :mod:`predictors.apps.service` (``max_batch`` 10,000 configs, ``max_body_bytes`` 16 MiB,
    ``body_timeout`` 10 s, ``max_header_bytes`` 16 KiB, ``header_timeout`` 10 s,
    ``timeout_keep_alive`` 5 s).
    """
    import uvicorn

    from predictors.apps import service

    if not 0 < int(port) < 65536:
        raise ConfigError(f"port={port!r} must be in 1..65535")
    header_bytes = service.MAX_HEADER_BYTES if max_header_bytes is None else max_header_bytes
    keep_alive = service.KEEP_ALIVE_S if timeout_keep_alive is None else timeout_keep_alive
    bundle = Predictors.load(Path(predictors_dir))
    device_bank = None
    if bank is not None:
        from predictors.transfer.csv_files import read_bank_csv

        device_bank = read_bank_csv(bank, bundle.space)
    app = service.create_app(
        bundle,
        max_batch=service.MAX_BATCH if max_batch is None else max_batch,
        max_body_bytes=service.MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes,
        body_timeout=service.BODY_TIMEOUT_S if body_timeout is None else body_timeout,
        max_header_bytes=header_bytes,
        bank=device_bank,
        devices_dir=devices_dir,
    )
    config = service.server_config(
        app,
        host=host,
        port=int(port),
        header_timeout=service.HEADER_TIMEOUT_S if header_timeout is None else header_timeout,
        max_header_bytes=header_bytes,
        timeout_keep_alive=keep_alive,
    )
    url = f"http://{host}:{int(port)}"
    print(f"serving {predictors_dir} at {url} (API docs: {url}/docs; Ctrl-C stops)", flush=True)
    uvicorn.Server(config).run()
