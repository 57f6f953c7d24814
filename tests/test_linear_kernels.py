"""Real low-precision kernels for linear-heavy (transformer) static modules.

The module under test is built here from plain layers (``nn.Linear``, ``nn.LayerNorm``,
``nn.GELU``, softmax attention written with matmuls, a
:class:`~nas.elastic.quantization.FakeQuantize` before
one linear layer), the shape any exported transformer subnet has; nothing here depends on a
supernet family.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from nas.deploy.int8 import (
    float_kept_nodes,
    has_torch_int8_kernels,
    is_int8_graph,
    quantize_onnx_int8,
    quantize_torch_int8,
    quantized_engine,
    torch_int8_scheme,
)
from nas.deploy.onnx_export import export_module_onnx
from nas.deploy.ort_kernels import optimized_op_types
from nas.deploy.weight_only import (
    W4_BLOCK_SIZE,
    is_w4_graph,
    quantize_onnx_w4,
    w4_weights,
)
from nas.elastic.quantization import FakeQuantize
from nas.errors import ConfigError
from nas.measure.deployed_accuracy import deployed_top1
from nas.measure.latency import LatencyProtocol, deployable, measure_latency
from nas.measure.targets import HardwareTarget, default_registry

FAST = LatencyProtocol(warmup=1, repeats=3, noise_cv=100.0, calibration_batches=2)
SHAPE = (4, 1, 16, 16)  # 16 tokens of 4x4 patches
DEPTH = 2


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Sequential(FakeQuantize(0.05, 8), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Linear patch embedding, two pre-norm blocks, mean pooling, linear classifier."""

    def __init__(self, dim: int = 64, heads: int = 2, patch: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch * patch, dim)
        self.position = nn.Parameter(torch.randn(1, (16 // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        tokens = self.embed(x.reshape(b, (h // p) * (w // p), c * p * p)) + self.position
        return self.classifier(self.norm(self.blocks(tokens)).mean(dim=1))


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyTransformer().eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)


@pytest.fixture(scope="module")
def onnx_files(model: nn.Module, x: np.ndarray, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("linear_kernels")
    fp32 = export_module_onnx(deployable(model), SHAPE, tmp / "m.onnx")
    rng = np.random.default_rng(2)
    calib = [rng.standard_normal(SHAPE, dtype=np.float32) for _ in range(4)]
    return {
        "fp32": fp32,
        "int8": quantize_onnx_int8(fp32, tmp / "m8.onnx", calib),
        "w4": quantize_onnx_w4(fp32, tmp / "m4.onnx"),
    }


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0])


def _relative_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


def test_int8_graph_runs_integer_matmul_kernels(onnx_files: dict[str, Path], x) -> None:
    fp32, int8 = onnx_files["fp32"], onnx_files["int8"]
    assert not is_int8_graph(fp32) and is_int8_graph(int8)
    # ORT fuses the QDQ groups: every linear layer (MatMul / Gemm with a weight) and Q @ K^T
    # are integer kernels after graph optimisation; softmax and P @ V stay float
    assert "QLinearMatMul" in optimized_op_types(int8)
    ops = [n.op_type for n in _optimized(int8).graph.node]
    integer = ops.count("QLinearMatMul") + ops.count("QGemm")
    assert integer == len(_linears(TinyTransformer())) + DEPTH, ops
    assert ops.count("Softmax") == DEPTH and ops.count("MatMul") == DEPTH
    assert "QLinearSoftmax" not in ops
    assert len(float_kept_nodes(fp32)) == 3 * DEPTH  # excluded: two products, one softmax
    err = _relative_rms(_run(int8, x), _run(fp32, x))
    # per-tensor uint8 activations calibrated on 4 random batches, per-channel int8 weights:
    # 2-7 % relative RMS on the logits for seeds 0-2 of this model; 10 % leaves the margin
    assert err < 0.10, err


def _optimized(path: Path):
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "o.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def test_torch_int8_quantizes_every_linear_dynamically(model: nn.Module, x) -> None:
    assert torch_int8_scheme(model) == "dynamic"
    convnet = nn.Sequential(nn.Conv2d(1, 512, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    # 4,608 convolution weights against 2,048 linear ones: FX static quantization
    assert torch_int8_scheme(nn.Sequential(convnet, nn.Linear(512, 4))) == "static"
    plain = deployable(model)
    q = quantize_torch_int8(plain, [torch.from_numpy(x)])
    assert has_torch_int8_kernels(q) and not has_torch_int8_kernels(plain)
    assert not _linears(q)  # every nn.Linear was replaced by a quantized one
    with quantized_engine(), torch.inference_mode():
        out, ref = q(torch.from_numpy(x)).numpy(), plain(torch.from_numpy(x)).numpy()
    assert _relative_rms(out, ref) < 0.10  # about 2 % measured, as for ONNX Runtime int8


def test_w4_graph_holds_one_matmul_nbits_per_linear_layer(model: nn.Module, onnx_files) -> None:
    w4 = onnx_files["w4"]
    assert is_w4_graph(w4) and not is_w4_graph(onnx_files["fp32"])
    assert not is_int8_graph(w4)
    weights = w4_weights(w4)
    assert len(weights) == len(_linears(model))  # the classifier's Gemm included
    assert "MatMulNBits" in optimized_op_types(w4)  # ORT keeps and runs the 4-bit kernel


def test_w4_weights_are_within_half_a_step_of_the_float_weights(model: nn.Module, onnx_files):
    """The quantizer's resolution: a step of ``absmax / 8`` per block of 128 input features.

    Symmetric 4-bit codes are -8..7 times the step, the block's largest magnitude mapping to
    -8, so every weight is within half a step of its float value, except one of the opposite
    sign beyond 7.5 steps, which is clipped to 7 steps (within one step).
    """
    for layer, quantized in zip(_linears(model), w4_weights(onnx_files["w4"]), strict=True):
        w = layer.weight.detach().numpy().T  # (K, N), as x @ w
        k, n = w.shape
        blocks = -(-k // W4_BLOCK_SIZE)
        padded = np.zeros((blocks * W4_BLOCK_SIZE, n), dtype=np.float32)
        padded[:k] = w
        absmax = np.abs(padded.T.reshape(n, blocks, W4_BLOCK_SIZE)).max(axis=2)
        np.testing.assert_allclose(np.abs(quantized.scales), absmax / 8, rtol=1e-6)
        step = np.repeat(np.abs(quantized.scales), W4_BLOCK_SIZE, axis=1)[:, :k].T
        error = np.abs(quantized.dequantized - w)
        bound = np.where(np.abs(w) <= 7.5 * step, step / 2, step) * (1 + 1e-5) + 1e-7
        assert (error <= bound).all(), quantized.node
        assert error.max() > 0  # really quantized


def test_w4_outputs_are_the_4bit_weights_and_close_to_fp32(model, onnx_files, x) -> None:
    """ORT's w4 output equals the float model with the dequantized 4-bit weights loaded.

    Tolerance (relative RMS of the logits) 3 %: the kernel (accuracy level 4) also rounds each
    block of 128 activations to int8, a step of ``absmax / 127``, about 0.4 % RMS per layer over
    the model's 11 linear layers. Against the float weights the 4-bit rounding adds half a step
    of ``absmax / 8`` per weight (7-8 % RMS of these weights), which gives 10-13 % on the logits
    for seeds 0-2 of this model; 25 % bounds it.
    """
    reference = deployable(model)
    for layer, quantized in zip(_linears(reference), w4_weights(onnx_files["w4"]), strict=True):
        layer.weight.copy_(torch.from_numpy(quantized.dequantized.T.copy()))
    with torch.inference_mode():
        with_4bit_weights = reference(torch.from_numpy(x)).numpy()
    w4 = _run(onnx_files["w4"], x)
    assert _relative_rms(w4, with_4bit_weights) < 0.03  # 0.6-0.7 % for seeds 0-2
    fp32 = _run(onnx_files["fp32"], x)
    assert 0.0 < _relative_rms(w4, fp32) < 0.25


@pytest.mark.parametrize("name", ["cpu_fp32", "cpu_int8", "ort_fp32", "ort_int8", "ort_w4"])
def test_every_precision_times_through_measure_latency(model: nn.Module, name: str) -> None:
    target = default_registry().get(name)
    res = measure_latency(model, SHAPE, target, protocol=FAST)
    assert res.median_ms > 0 and res.repeats == 3 and res.target == name


def test_w4_deployed_accuracy_runs_the_4bit_graph(model: nn.Module, onnx_files, x) -> None:
    xs = torch.from_numpy(np.random.default_rng(3).standard_normal((64, 1, 16, 16), "float32"))
    with torch.inference_mode():
        labels = deployable(model)(xs).argmax(1)
    registry = default_registry()
    calib = torch.zeros(4, 1, 16, 16)
    fp32 = deployed_top1(model, registry.get("ort_fp32"), calib_x=calib, x=xs, y=labels)
    w4 = deployed_top1(model, registry.get("ort_w4"), calib_x=calib, x=xs, y=labels)
    expected = float((_run(onnx_files["w4"], xs.numpy()).argmax(1) == labels.numpy()).mean())
    assert fp32 == 1.0 and w4 == pytest.approx(expected)


def test_bad_low_precision_configs_are_refused(onnx_files, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"target\.precision='w4'.*target\.runtime='torch'"):
        HardwareTarget("t", runtime="torch", precision="w4")
    with pytest.raises(ConfigError, match=r"target\.precision='int4'.*'fp32', 'int8', 'w4'"):
        HardwareTarget.from_dict({"name": "t", "runtime": "onnxruntime", "precision": "int4"})
    with pytest.raises(ValueError, match="block_size"):
        quantize_onnx_w4(onnx_files["fp32"], tmp_path / "b.onnx", block_size=24)
    no_linear = export_module_onnx(nn.LayerNorm(16).eval(), (2, 16), tmp_path / "ln.onnx")
    with pytest.raises(ConfigError, match="no MatMul"):
        quantize_onnx_w4(no_linear, tmp_path / "ln4.onnx")
