"""Elastic input resolution (Once-for-All's fourth dimension) through every consumer.

A ``resolution`` dimension decides the side of the images each subnet sees: training draws one
per step for every subnet and worker, accuracy and deployment resize to it, cost and latency
are computed at it, and the exported ONNX graph takes raw pixels at the data's size and
resizes inside, as training did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import search_spaces
from nas.artifacts.export import export_subnet, load_exported, read_card
from nas.data.datasets import load_digits_data
from nas.data.resolution import resize, step_resolution
from nas.errors import ConfigError
from nas.measure.accuracy import evaluate_accuracy
from nas.measure.cost import compute_cost, count_module_cost
from nas.supernets.base import Supernet
from nas.training import TrainConfig
from nas.training.loop import Trainer


@pytest.fixture(scope="module")
def space():  # type: ignore[no-untyped-def]
    return search_spaces.get("tiny_cnn", resolutions=(6, 8))


def test_resolution_is_a_dimension_and_fixed_spaces_are_unchanged(space) -> None:  # type: ignore[no-untyped-def]
    assert space.dim("resolution").options == (6, 8)
    assert space.largest()["resolution"] == 8 and space.smallest()["resolution"] == 6
    plain = search_spaces.get("tiny_cnn")
    assert "resolution" not in plain.names
    assert "resolutions" not in plain.metadata["arch_dict"]  # fingerprints of old artifacts hold
    ofa = search_spaces.get("mobilenet_like", resolutions=(128, 160, 192, 224))
    assert ofa.dim("resolution").options == (128, 160, 192, 224)
    with pytest.raises(ConfigError, match=r"space\.options\.resolutions=\[8, 8\]"):
        search_spaces.get("tiny_cnn", resolutions=(8, 8))


def test_cost_and_input_shape_follow_the_config(space) -> None:  # type: ignore[no-untyped-def]
    net = Supernet(space).eval()
    for side in (6, 8):
        cfg = space.largest().replace(resolution=side)
        shape = net.input_shape(1, cfg)
        assert shape == (1, 1, side, side)
        assert compute_cost(space, cfg) == count_module_cost(net.export(cfg), shape)
    small, large = (compute_cost(space, space.largest().replace(resolution=r)) for r in (6, 8))
    assert small.macs < large.macs and small.params == large.params


def test_each_training_step_draws_one_resolution_for_every_worker(space) -> None:  # type: ignore[no-untyped-def]
    draws = [step_resolution(space, 0, step) for step in range(64)]
    assert set(draws) == {6, 8}
    assert draws == [step_resolution(space, 0, step) for step in range(64)]  # same on any worker
    assert step_resolution(search_spaces.get("tiny_cnn"), 0, 3) is None


def test_training_and_accuracy_run_at_the_drawn_resolutions(space) -> None:  # type: ignore[no-untyped-def]
    data = load_digits_data(seed=0)
    config = TrainConfig(epochs=1, batch_size=64, n_random=1, seed=0)
    trainer = Trainer.create(space, data, config)
    from nas.training.step import SandwichObjective

    trainer.run_epoch(SandwichObjective(trainer.model), 0)
    assert trainer.step > 0
    net = trainer.model.eval()
    cfg = space.smallest()  # resolution 6
    top1 = evaluate_accuracy(net, cfg, data, split="val", n_calib=128)
    x, y = data.tensors("val")
    with torch.no_grad():
        manual = float((net(resize(x, 6), cfg).argmax(1) == y).float().mean())
    assert top1 == pytest.approx(manual)


def test_export_takes_raw_pixels_at_the_data_size_and_resizes_inside(
    space,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = load_digits_data(seed=0)
    torch.manual_seed(0)
    net = Supernet(space).eval()
    cfg = space.largest().replace(resolution=6)
    out = export_subnet(
        net, cfg, tmp_path / "sub", preprocessing=data.preprocessing.to_dict(), onnx=True
    )
    card = read_card(out.path)
    assert card["input_shape"] == [1, 1, 8, 8] and card["subnet_input_shape"] == [1, 1, 6, 6]
    raw = data.preprocessing.denormalise(data.tensors("val")[0][:16])
    module = load_exported(out.path, raw_input=True)
    with torch.no_grad():
        expected = net(resize(data.tensors("val")[0][:16], 6), cfg)
        torch.testing.assert_close(module(raw), expected, rtol=1e-4, atol=1e-4)
    session = ort.InferenceSession(
        str(out.path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_out,) = session.run(None, {"input": raw.numpy().astype(np.float32)})
    np.testing.assert_allclose(onnx_out, expected.numpy(), rtol=1e-3, atol=1e-3)


def test_a_target_resolution_is_refused_for_a_space_that_searches_it(tmp_path: Path) -> None:
    from nas.spec.config import ExperimentSpec
    from nas.spec.resolve import resolve

    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "r"\noutput_dir = "%s"\n[space]\nname = "tiny_cnn"\n'
        'options = { resolutions = [6, 8] }\n[data]\nkind = "digits"\n'
        '[[targets]]\nname = "t"\nresolution = 8\n[measure]\ntargets = ["t"]\n'
        '[search]\nobjectives = ["top1:max", "latency_ms@t:min"]\n' % (tmp_path / "out")
    )
    with pytest.raises(ConfigError, match=r"measure\.targets\[0\] \('t'\) has resolution=8"):
        resolve(ExperimentSpec.from_toml(spec))
