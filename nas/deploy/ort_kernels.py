"""Which kernels the installed ONNX Runtime has, and which ones it runs for a given model.

Two questions decide whether a latency is a measurement of real low-precision kernels:

* does this ONNX Runtime build register a kernel for an operator at all (contrib operators such
  as ``com.microsoft.MatMulNBits`` come and go between releases and builds)?
  :func:`ort_has_kernel` answers by creating a session on a one-node model, the only answer that
  does not depend on documentation or version numbers; :func:`require_ort_kernel` turns a "no"
  into one :class:`~nas.errors.ConfigError` line.
* after ONNX Runtime's graph optimisation, which operators does a model execute?
  :func:`optimized_op_types` returns them; QDQ pairs around a ``MatMul`` are only worth anything
  when they are fused into an integer kernel such as ``QLinearMatMul``.

Only ``onnx`` and ``onnxruntime`` are imported (no torch).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

from nas.errors import ConfigError

CONTRIB_DOMAIN = "com.microsoft"


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """Raise ONNX Runtime's default log severity to errors while probing."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def _probe_model(
    op_type: str, domain: str, inputs: Sequence[tuple[str, object]], attributes: Mapping
) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph_inputs = []
    initializers = []
    names = []
    for name, value in inputs:
        names.append(name)
        if isinstance(value, np.ndarray):
            initializers.append(numpy_helper.from_array(value, name))
        else:
            shape = cast("Sequence[int | str | None]", value)  # not an array: its shape
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    node = helper.make_node(op_type, names, ["y"], domain=domain, **dict(attributes))
    graph = helper.make_graph(
        [node],
        "probe",
        graph_inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _matmul_nbits_probe(op_type: str, domain: str) -> bytes:
    """A one-node 4-bit ``MatMulNBits``-shaped model (K=N=16, one block of 16)."""
    import numpy as np

    return _probe_model(
        op_type,
        domain,
        [
            ("x", [1, 16]),
            ("b", np.zeros((16, 1, 8), dtype=np.uint8)),
            ("scales", np.ones(16, dtype=np.float32)),
        ],
        {"K": 16, "N": 16, "bits": 4, "block_size": 16},
    )


@functools.cache
def ort_has_kernel(op_type: str = "MatMulNBits", domain: str = CONTRIB_DOMAIN) -> bool:
    """Whether this ONNX Runtime's CPU provider has a kernel for ``domain.op_type``.

    The probe is a session on a one-node model with ``MatMulNBits``'s inputs and attributes (the
    only contrib kernel this platform needs); any session error means "no". Cached per process.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    with _quiet_ort():
        try:
            ort.InferenceSession(
                _matmul_nbits_probe(op_type, domain), providers=["CPUExecutionProvider"]
            )
        except Exception:  # any failure to build the session means no kernel
            return False
    return True


def ort_version() -> str:
    """The installed ONNX Runtime version, or ``"not installed"``."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "not installed"
    return str(ort.__version__)


def require_ort_kernel(
    op_type: str, *, domain: str = CONTRIB_DOMAIN, needed_by: str, instead: str
) -> None:
    """Raise one :class:`~nas.errors.ConfigError` line unless ONNX Runtime has the kernel.

    Args:
        op_type: Operator, e.g. ``"MatMulNBits"``.
        domain: Its domain (``"com.microsoft"`` for contrib operators).
        needed_by: What asks for it, e.g. ``"target 'ort_w4' (precision 'w4')"``.
        instead: What the user can do instead, appended to the message.
    """
    if not ort_has_kernel(op_type, domain):
        raise ConfigError(
            f"{needed_by} needs ONNX Runtime's {domain}.{op_type} CPU kernel, which the installed "
            f"onnxruntime ({ort_version()}) lacks; {instead}"
        )


def optimized_op_types(path: str | Path, *, threads: int = 1) -> list[str]:
    """Operator types of ``path`` after ONNX Runtime's extended graph optimisation.

    The extended level is where QDQ node groups are fused into integer kernels (``QLinearMatMul``,
    ``QGemm``, ``QLinearConv``) and ``MatMulNBits`` is kept; the ``all`` level only adds
    layout transformations on top, which are not serialisable portably.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="nas-ort-opt-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out)
        with _quiet_ort():
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sorted({node.op_type for node in onnx.load(str(out)).graph.node})


__all__ = [
    "CONTRIB_DOMAIN",
    "optimized_op_types",
    "ort_has_kernel",
    "ort_version",
    "require_ort_kernel",
]
