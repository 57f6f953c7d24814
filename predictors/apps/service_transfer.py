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
when the service starts; a saved device that does not load (a bad manifest, a ``target`` other
than its folder's name, another metric, more than :data:`MAX_DEVICES` folders) refuses the start
with one error naming the file. Bad input answers 422 with ``loc`` naming the field
(``["body", "measurements", 3, "latency_ms"]``, ``["body", "bank", "configs", 0, "s0.depth"]``,
``["query", "n"]``). Latencies are bounded (:data:`MIN_LATENCY_MS` to :data:`MAX_LATENCY_MS`),
device names follow :data:`TARGET_PATTERN`, and a fit is saved only once it has succeeded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from starlette.concurrency import run_in_threadpool

from nas.errors import ConfigError, IncompatibleArtifactError
from nas.space import SearchSpace
from predictors.bundle import LATENCY_METRIC
from predictors.predictor import ConfigEncoder, InvalidConfigError
from predictors.transfer.device_bank import DeviceBank
from predictors.transfer.few_shot import (
    MIN_TARGET_SAMPLES,
    TransferPredictor,
    check_distinct,
    fit_transfer,
)

MAX_DEVICES = 64
"""Most devices one service adds (each holds a copy of the bank's predicted latencies)."""
TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Allowed device names (targets and bank devices): also a safe directory name."""
MAX_NAME_CHARS = 100
"""Longest device name."""
_DEVICE_NAME = re.compile(TARGET_PATTERN)
MIN_LATENCY_MS = 1e-6
MAX_LATENCY_MS = 1e7
"""Physical bounds of a latency (a nanosecond to about three hours): beyond them a value is a
unit mistake, and its logarithm would overflow the fit."""


def _physical_ms(value: float) -> float:
    if not MIN_LATENCY_MS <= value <= MAX_LATENCY_MS:
        raise ValueError(
            f"latency {value!r} ms is outside the physical bounds "
            f"{MIN_LATENCY_MS:g}..{MAX_LATENCY_MS:g} ms"
        )
    return value


Milliseconds = Annotated[
    float,
    Field(
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"minimum": MIN_LATENCY_MS, "maximum": MAX_LATENCY_MS},
    ),
    AfterValidator(_physical_ms),
]
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
    target: StrictStr = Field(
        pattern=TARGET_PATTERN, max_length=MAX_NAME_CHARS, description="device name"
    )
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


def device_name_problem(name: object) -> str | None:
    """Why ``name`` is not a device name (the rule of :data:`TARGET_PATTERN`), or ``None``."""
    if isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _DEVICE_NAME.fullmatch(name):
        return None
    return (
        f"device name {name!r} must match {TARGET_PATTERN} (letters, digits, '_', '.', '-') "
        f"in at most {MAX_NAME_CHARS} characters"
    )


_BANK_LATENCY = re.compile(r"^bank\.latency\[(['\"])(.*?)\1\](?:\[(\d+)\])?")


def bank_from_body(space: SearchSpace, body: BankBody, loc: Sequence[Any]) -> DeviceBank:
    """A :class:`DeviceBank` of ``space``, or a 422 whose ``loc`` (below ``loc``) names the key."""
    for device, values in body.latency.items():
        problem = device_name_problem(device)
        if problem is not None:
            raise _unprocessable([*loc, "latency", device], problem)
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
        """Every saved device, or one error naming the first bad file (the start is refused)."""
        from predictors.transfer.persistence import MANIFEST_FILE

        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"devices_dir={str(directory)!r} is a file, not a directory")
        manifests = sorted(directory.glob(f"*/{MANIFEST_FILE}"))
        if len(manifests) > MAX_DEVICES:
            raise IncompatibleArtifactError(
                f"devices_dir={str(directory)!r} holds {len(manifests)} saved devices; a service "
                f"holds at most {MAX_DEVICES} (remove some folders)"
            )
        for manifest in manifests:
            predictor = self._load_device(manifest)
            self._devices[predictor.name] = predictor

    def _load_device(self, manifest: Path) -> TransferPredictor:
        """One saved device, checked as ``POST /devices`` would have checked it."""
        from predictors.transfer.persistence import load_transfer

        predictor = load_transfer(manifest.parent, space=self.space)
        folder = manifest.parent.name
        problems = [
            device_name_problem(predictor.target),
            None
            if predictor.target == folder
            else f"target={predictor.target!r} is not its folder's name {folder!r}",
            None
            if predictor.metric == LATENCY_METRIC
            else f"metric={predictor.metric!r} is not {LATENCY_METRIC!r}",
            *(device_name_problem(d) for d in predictor.devices),
            None
            if predictor.name not in self.reserved
            else f"{predictor.name!r} is already a predictor of the bundle",
        ]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise IncompatibleArtifactError(f"{manifest}: {problem}")
        return predictor

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
            X = ConfigEncoder(self.space)(configs)
        except InvalidConfigError as exc:
            where: list[Any] = ["body", "measurements", exc.index, "config"]
            raise _unprocessable([*where, exc.key] if exc.key else where, str(exc)) from exc
        pairs = [(m.config, m.latency_ms) for m in request.measurements]
        try:
            check_distinct(self.space, X, key="measurements")
            predictor = fit_transfer(bank, pairs, target=request.target, space=self.space)
        except ConfigError as exc:  # too few distinct configs, or a fit that is not finite
            raise _unprocessable(["body", "measurements"], str(exc)) from exc
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
