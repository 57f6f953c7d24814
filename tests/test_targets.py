from __future__ import annotations

import dataclasses

import pytest

from nas.errors import ConfigError
from nas.measure.targets import (
    PRECISIONS,
    RUNTIME_PRECISIONS,
    RUNTIMES,
    HardwareTarget,
    TargetRegistry,
    builtin_targets,
    default_registry,
)


def test_registry_has_the_builtin_cpu_targets() -> None:
    registry = default_registry()
    assert {"cpu_fp32", "cpu_int8", "ort_fp32", "ort_int8", "ort_w4"} <= set(registry.names())
    combos = {(t.runtime, t.precision) for t in registry}
    assert combos == {(r, p) for r in RUNTIMES for p in RUNTIME_PRECISIONS[r]}
    assert set(PRECISIONS) == {p for ps in RUNTIME_PRECISIONS.values() for p in ps}


def test_w4_is_allowed_only_on_onnxruntime_naming_keys_and_allowed_values() -> None:
    assert HardwareTarget("w", runtime="onnxruntime", precision="w4").precision == "w4"
    with pytest.raises(ConfigError) as info:
        HardwareTarget.from_dict({"name": "w", "runtime": "torch", "precision": "w4"})
    msg = str(info.value)
    assert "\n" not in msg
    assert "target.precision='w4'" in msg and "target.runtime='torch'" in msg
    assert "fp32, int8" in msg and "'onnxruntime'" in msg


def test_w4_target_resolves_when_onnxruntime_has_matmul_nbits() -> None:
    from nas.deploy.ort_kernels import ort_has_kernel

    assert ort_has_kernel("MatMulNBits")  # onnxruntime >= 1.17 is a dependency
    registry = default_registry()
    assert registry.get("ort_w4").precision == "w4"
    user = registry.extended([{"name": "edge_w4", "runtime": "onnxruntime", "precision": "w4"}])
    assert user.resolve(["edge_w4"])[0].runtime == "onnxruntime"


def test_a_missing_onnxruntime_kernel_is_refused_in_one_line() -> None:
    from nas.deploy.ort_kernels import ort_has_kernel, require_ort_kernel

    # the same probe and refusal a w4 target goes through, on an operator no build registers
    assert not ort_has_kernel("MatMulNBitsNotAnOperator")
    with pytest.raises(ConfigError) as info:
        require_ort_kernel(
            "MatMulNBitsNotAnOperator", needed_by="target 'x' (precision 'w4')", instead="use int8"
        )
    msg = str(info.value)
    assert "\n" not in msg and "com.microsoft.MatMulNBitsNotAnOperator" in msg
    assert "target 'x'" in msg and "onnxruntime (" in msg and "use int8" in msg


@pytest.mark.parametrize("target", builtin_targets(), ids=lambda t: t.name)
def test_every_registry_entry_round_trips_and_is_frozen(target: HardwareTarget) -> None:
    assert HardwareTarget.from_dict(target.to_dict()) == target
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.threads = 4  # type: ignore[misc]
    assert target.input_shape(3, 64) == (target.batch_size, 3, 64, 64)


def test_unknown_target_name_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        default_registry().get("tpu_v9")
    msg = str(info.value)
    assert "'tpu_v9'" in msg and "target" in msg
    for name in default_registry().names():
        assert name in msg


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("runtime", "tflite", RUNTIMES), ("precision", "fp16", PRECISIONS)],
    ids=["runtime", "precision"],
)
def test_bad_runtime_or_precision_names_key_value_and_allowed(
    key: str, value: str, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as info:
        HardwareTarget("x", **{key: value})
    msg = str(info.value)
    assert f"target.{key}" in msg and repr(value) in msg
    assert all(a in msg for a in allowed)


@pytest.mark.parametrize(
    ("field", "value"),
    [("threads", 0), ("batch_size", -1), ("resolution", 0), ("threads", 1.5), ("threads", True)],
)
def test_bad_numbers_raise_naming_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"target\.{field}"):
        HardwareTarget("x", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "3cpu", "has space", None])
def test_bad_names_raise(name: object) -> None:
    with pytest.raises(ConfigError, match=r"target\.name"):
        HardwareTarget(name)  # type: ignore[arg-type]


def test_empty_resource_raises() -> None:
    with pytest.raises(ConfigError, match=r"target\.resource"):
        HardwareTarget("x", resource="")


def test_user_targets_extend_the_registry_and_pin_a_resource() -> None:
    registry = default_registry().extended(
        [{"name": "rpi4", "runtime": "onnxruntime", "precision": "int8", "resource": "rpi4"}]
    )
    rpi = registry.get("rpi4")
    assert rpi.ray_resources == {"rpi4": 1.0}
    assert default_registry().get("cpu_fp32").ray_resources == {}
    assert "rpi4" in registry and "rpi4" not in default_registry()
    assert registry.resolve(["rpi4", "cpu_fp32"])[0] is rpi


def test_unknown_keys_and_duplicates_raise() -> None:
    with pytest.raises(ConfigError, match="nodes"):
        HardwareTarget.from_dict({"name": "a", "nodes": 3})
    with pytest.raises(ConfigError, match="name"):
        HardwareTarget.from_dict({"runtime": "torch"})
    with pytest.raises(ConfigError, match="cpu_fp32"):
        default_registry().extended([HardwareTarget("cpu_fp32")])
    with pytest.raises(ConfigError, match="not one of"):
        TargetRegistry(()).get("cpu_fp32")
