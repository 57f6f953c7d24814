"""HTTP routes that add a new hardware target to a running service from a few measurements.

A service answers for the targets its bundle was fitted on; a device measured later needs no
new bundle. The routes (added by :func:`add_transfer_routes`, state in :class:`DeviceRegistry`):

- ``PUT /bank``: the device bank, the same space's architectures measured on known devices
  (``{"configs": [...], "latency": {"<device>": [ms, ...]}}``); replaces the previous bank;
- ``GET /references?n=10&seed=0``: the architectures to time on the new device
  (:meth:`~predictors.transfer.device_bank.DeviceBank.references`; chosen by the platform);
- ``POST /devices``: ``{"target", "measurements": [{"config", "latency_ms"}], "bank"?}`` fits
  :func:`~predictors.transfer.few_shot.fit_transfer` (on the body's bank, else the service's) and
  makes
  ``latency_ms@<target>`` answer in ``POST /predict`` like any bundle predictor;
- ``GET /devices``: the bank and the added devices (weights, leave-one-out quality).

Added devices live in memory (lost when the service stops) unless ``devices_dir`` is given:
each is then saved there as a transfer-predictor manifest (JSON, never a pickle) and loaded
when the service starts. Bad input answers 422 with ``loc`` naming the field
(``["body", "measurements", 3, "latency_ms"]``, ``["body", "bank", "configs", 0, "s0.depth"]``,
``["query", "n"]``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from nas.errors import ConfigError, IncompatibleArtifactError
from nas.space import SearchSpace
from predictors.predictor import ConfigEncoder, InvalidConfigError
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import MIN_TARGET_SAMPLES, TransferPredictor, fit_transfer

MAX_DEVICES = 64
"""Most devices one service adds (each holds a copy of the bank's predicted latencies)."""
TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Allowed device names: also a safe directory name under ``devices_dir``."""

Milliseconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
ConfigValue = StrictInt | StrictFloat | StrictStr


class BankBody(BaseModel):
    """Architectures measured on known devices: ``latency[device][i]`` is ``configs[i]``'s."""

    model_config = ConfigDict(extra="forbid")
    configs: list[dict[str, ConfigValue]] = Field(min_length=2, description="full configs")
    latency: dict[str, list[Milliseconds]] = Field(
        min_length=1, description="device name -> milliseconds, one per config"
    )


class Measurement(BaseModel):
    """One architecture timed on the new device."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, ConfigValue]
    latency_ms: Milliseconds


class AddDeviceRequest(BaseModel):
    """A new device's measurements (of ``GET /references``' architectures, ideally)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "target": "my_phone",
                    "measurements": [{"config": {"s0.depth": 2}, "latency_ms": 12.5}],
                }
            ]
        },
    )
    target: StrictStr = Field(pattern=TARGET_PATTERN, max_length=100, description="device name")
    measurements: list[Measurement] = Field(min_length=MIN_TARGET_SAMPLES)
    bank: BankBody | None = Field(default=None, description="default: the service's bank")


def _unprocessable(loc: Sequence[Any], message: str) -> HTTPException:
    return HTTPException(
        status_code=422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}]
    )


def summary(predictor: TransferPredictor) -> dict[str, Any]:
    """What a client needs to judge an added device: its fit and the devices it leans on."""
    quality = predictor.quality.to_dict() if predictor.quality is not None else None
    return {
        "name": predictor.name,
        "target": predictor.target,
        "n_train": predictor.n_train,
        "alpha": predictor.alpha,
        "lam": predictor.lam,
        "representation": predictor.representation,
        "device_weights": predictor.device_weights(),
        "leave_one_out": quality,
    }


_BANK_LATENCY = re.compile(r"^bank\.latency\[(['\"])(.*?)\1\](?:\[(\d+)\])?")


def bank_from_body(space: SearchSpace, body: BankBody, loc: Sequence[Any]) -> DeviceBank:
    """A :class:`DeviceBank` of ``space``, or a 422 whose ``loc`` (below ``loc``) names the key."""
    for device, values in body.latency.items():
        if not device or "@" in device:
            raise _unprocessable(
                [*loc, "latency", device], f"device name {device!r} must be non-empty, no '@'"
            )
        if len(values) != len(body.configs):
            raise _unprocessable(
                [*loc, "latency", device],
                f"latency[{device!r}] has {len(values)} values for {len(body.configs)} configs",
            )
    try:
        return DeviceBank.from_configs(space, body.configs, body.latency)
    except InvalidConfigError as exc:
        where = [*loc, "configs", exc.index]
        raise _unprocessable([*where, exc.key] if exc.key else where, str(exc)) from exc
    except ConfigError as exc:
        match = _BANK_LATENCY.match(str(exc))
        if match:
            where = [*loc, "latency", match.group(2)]
            raise _unprocessable(
                [*where, int(match.group(3))] if match.group(3) else where, str(exc)
            ) from exc
        raise _unprocessable([*loc, "configs"], str(exc)) from exc


class DeviceRegistry:
    """The service's bank and added devices; thread-safe, optionally saved to ``devices_dir``.

    Args:
        space: The bundle's search space (banks and measurements must be of it).
        bank: Initial bank (``None``: none until ``PUT /bank`` or a bank in ``POST /devices``).
        reserved: Predictor names an added device may not take (the bundle's).
        devices_dir: Directory to save added devices in and load them from at start.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        bank: DeviceBank | None = None,
        reserved: Sequence[str] = (),
        devices_dir: str | Path | None = None,
    ) -> None:
        if bank is not None and bank.fingerprint != space.fingerprint():
            raise ConfigError(
                f"bank is for search space {bank.space.name!r} (fingerprint {bank.fingerprint}), "
                f"not the service's {space.name!r} (fingerprint {space.fingerprint()})"
            )
        self.space = space
        self.bank = bank
        self.reserved = frozenset(reserved)
        self.devices_dir = Path(devices_dir) if devices_dir is not None else None
        self._lock = threading.Lock()
        self._devices: dict[str, TransferPredictor] = {}
        if self.devices_dir is not None:
            self._load_saved(self.devices_dir)

    def _load_saved(self, directory: Path) -> None:
        from predictors.transfer.persistence import MANIFEST_FILE, load_transfer

        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"devices_dir={str(directory)!r} is a file, not a directory")
        for manifest in sorted(directory.glob(f"*/{MANIFEST_FILE}")):
            predictor = load_transfer(manifest.parent, space=self.space)
            if predictor.name in self.reserved:
                raise IncompatibleArtifactError(
                    f"{manifest}: {predictor.name!r} is already a predictor of the bundle"
                )
            self._devices[predictor.name] = predictor

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the added predictors (``latency_ms@<target>``), in order of addition."""
        with self._lock:
            return tuple(self._devices)

    def predictors(self, names: Sequence[str] | None = None) -> list[TransferPredictor]:
        """The added predictors, all or those named (unknown names are skipped)."""
        with self._lock:
            if names is None:
                return list(self._devices.values())
            return [self._devices[n] for n in names if n in self._devices]

    def set_bank(self, bank: DeviceBank) -> None:
        with self._lock:
            self.bank = bank

    def add(self, request: AddDeviceRequest) -> tuple[TransferPredictor, bool]:
        """Fit and register the request's device; ``(predictor, replaced an earlier fit)``."""
        bank = (
            bank_from_body(self.space, request.bank, ["body", "bank"])
            if request.bank is not None
            else self.bank
        )
        if bank is None:
            raise _unprocessable(
                ["body", "bank"],
                "the service has no device bank: PUT /bank first, or give 'bank' in the body",
            )
        name = f"{bank.metric}@{request.target}"
        if name in self.reserved:
            raise _unprocessable(
                ["body", "target"],
                f"target={request.target!r}: {name!r} is a predictor of the bundle; choose "
                "another name",
            )
        if request.target in bank.devices:
            raise _unprocessable(
                ["body", "target"],
                f"target={request.target!r} is already a device of the bank {list(bank.devices)}",
            )
        configs = [m.config for m in request.measurements]
        try:
            ConfigEncoder(self.space)(configs)
        except InvalidConfigError as exc:
            where: list[Any] = ["body", "measurements", exc.index, "config"]
            raise _unprocessable([*where, exc.key] if exc.key else where, str(exc)) from exc
        pairs = [(m.config, m.latency_ms) for m in request.measurements]
        predictor = fit_transfer(bank, pairs, target=request.target, space=self.space)
        with self._lock:
            replaced = name in self._devices
            if not replaced and len(self._devices) >= MAX_DEVICES:
                raise _unprocessable(
                    ["body", "target"], f"the service holds {MAX_DEVICES} added devices already"
                )
            if self.devices_dir is not None:
                from predictors.transfer.persistence import save_transfer

                save_transfer(predictor, self.devices_dir / request.target)
            self._devices[name] = predictor
        return predictor, replaced

    def predict(self, configs: Sequence[Any], names: Sequence[str] | None) -> dict[str, Any]:
        """Predictions of the added (or the named) devices for validated configs."""
        selected = self.predictors(names)
        if not selected or not configs:
            return {}
        X = selected[0].encode(configs)
        return {p.name: p.predict_encoded(X) for p in selected}


def add_transfer_routes(app: FastAPI, registry: DeviceRegistry, *, max_batch: int) -> None:
    """Add ``PUT /bank``, ``GET /references``, ``POST /devices`` and ``GET /devices``."""

    @app.put("/bank")
    async def put_bank(body: BankBody) -> dict[str, Any]:
        """Replace the device bank (architectures measured on known devices)."""
        if len(body.configs) > 100 * max_batch:
            raise _unprocessable(
                ["body", "configs"],
                f"configs has {len(body.configs)} items; at most {100 * max_batch} in a bank",
            )
        bank = await run_in_threadpool(bank_from_body, registry.space, body, ["body"])
        registry.set_bank(bank)
        return {"devices": list(bank.devices), "architectures": len(bank)}

    @app.get("/references")
    def references(
        n: Annotated[int, Query(ge=1, description="how many architectures")] = 10,
        seed: Annotated[int, Query(ge=0, description="start of the farthest-point choice")] = 0,
    ) -> dict[str, Any]:
        """The bank architectures to measure on a new device (fast, slow and disputed ones)."""
        bank = registry.bank
        if bank is None:
            raise _unprocessable(["query", "bank"], "the service has no device bank: PUT /bank")
        if n > len(bank):
            raise _unprocessable(
                ["query", "n"], f"n={n} reference architectures must be in 1..{len(bank)}"
            )
        configs = bank.references(n, seed=seed)
        return {
            "n": n,
            "seed": seed,
            "bank_devices": list(bank.devices),
            "configs": [c.to_dict() for c in configs],
        }

    @app.post("/devices")
    async def add_device(request: AddDeviceRequest) -> dict[str, Any]:
        """Fit a new device from its measurements and the bank; it then answers ``/predict``."""
        if len(request.measurements) > max_batch:
            raise _unprocessable(
                ["body", "measurements"],
                f"measurements has {len(request.measurements)} items; at most {max_batch}",
            )
        predictor, replaced = await run_in_threadpool(registry.add, request)
        return {**summary(predictor), "replaced": replaced}

    @app.get("/devices")
    def devices() -> dict[str, Any]:
        """The bank (devices, size) and every added device's summary."""
        bank = registry.bank
        return {
            "bank": None
            if bank is None
            else {"devices": list(bank.devices), "architectures": len(bank)},
            "devices": [summary(p) for p in registry.predictors()],
        }


def merge_predictions(
    rows: list[dict[str, float]], extra: dict[str, np.ndarray]
) -> list[dict[str, float]]:
    """Add the added devices' columns to the bundle's prediction rows."""
    for i, row in enumerate(rows):
        for name, values in extra.items():
            row[name] = float(values[i])
    return rows
