"""Supernet recipe parts (``[train]`` keys) checked on properties, each on a real tiny training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import search_spaces
from nas.data.datasets import load_digits_data
from nas.errors import ConfigError, IncompatibleArtifactError
from nas.supernets.base import Supernet
from nas.training.checkpoint import RAW_PREFIX, latest_checkpoint, load_checkpoint
from nas.training.config import TrainConfig
from nas.training.loop import (
    Trainer,
    evaluate_epoch,
    make_optimizer,
    make_scheduler,
    train_locally,
)
from nas.training.step import SandwichObjective


@pytest.fixture(scope="module")
def data():
    return load_digits_data(seed=0)


def test_cosine_schedule_ends_at_the_floor() -> None:
    net = torch.nn.Linear(2, 2)
    for floor in (0.0, 0.05, 0.3):
        config = TrainConfig(epochs=4, lr=0.2, lr_floor=floor)
        optimizer = make_optimizer(net, config)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch=5)
        lrs = []
        for _ in range(20):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert lrs[0] == pytest.approx(0.2)
        assert all(a >= b for a, b in itertools.pairwise(lrs))  # never rises
        assert min(lrs) >= 0.2 * floor - 1e-12
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * floor, abs=1e-12)


def test_smoothing_on_the_largest_only_leaves_student_labels_hard(data) -> None:
    space = search_spaces.get("tiny_cnn")
    torch.manual_seed(0)
    net = Supernet(space).eval()
    objective = SandwichObjective(net)
    x, y = data.tensors("train")
    x, y = x[:32], y[:32]
    student = space.smallest()
    kwargs = dict(distill=True, temperature=1.0, distill_weight=0.25, label_smoothing=0.3)
    with torch.no_grad():
        _, largest_all, students_all, _ = objective(x, y, space.largest(), [student], **kwargs)
        _, largest_one, students_one, _ = objective(
            x, y, space.largest(), [student], students_smoothing=0.0, **kwargs
        )
        teacher, logits = net(x, space.largest()), net(x, student)
        soft = F.softmax(teacher, dim=1)
        expected = 0.25 * F.cross_entropy(logits, soft) + 0.75 * F.cross_entropy(logits, y)
    assert float(largest_one) == pytest.approx(float(largest_all))  # the largest still smoothed
    assert float(students_one) == pytest.approx(float(expected), rel=1e-5)
    assert float(students_one) != pytest.approx(float(students_all))


@pytest.mark.parametrize("space_name", ["fashion_cnn", "vit_fashion"])
def test_zero_initialised_residual_blocks_start_as_the_identity(space_name: str) -> None:
    space = search_spaces.get(space_name)
    torch.manual_seed(0)
    net = Supernet(space)
    assert net.zero_init_residuals() > 0
    net.eval()
    x = torch.randn(4, *net.input_shape()[1:])
    largest = net.plan(space.largest())
    if space_name == "fashion_cnn":
        out = net.activation(net.stem_bn(net.stem_conv(x)))
        for stage, plans in zip(net.stages, largest.stages, strict=False):
            out = stage.blocks[0](out, plans[0], net.activation)
            for block, plan in zip(list(stage.blocks)[1:], plans[1:], strict=False):
                assert plan.residual
                torch.testing.assert_close(block(out, plan, net.activation), out)
    else:
        tokens = net.full_tokens(x)
        for block, layer in zip(net.blocks, largest.layers, strict=False):
            torch.testing.assert_close(block(tokens, layer), tokens, rtol=0, atol=0)
    # the supernet still trains from there: not every gradient is zero
    net.train()
    loss = F.cross_entropy(net(x, space.largest()), torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_a_family_without_zero_init_is_refused_by_name(data) -> None:
    class NoZeroInit(torch.nn.Module):
        pass

    from nas.training.loop import check_zero_init_support

    with pytest.raises(ConfigError, match=r"train\.zero_init_residual"):
        check_zero_init_support(NoZeroInit(), TrainConfig(zero_init_residual=True))


def test_weight_average_is_what_is_evaluated_and_checkpointed(data, tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    torch.set_num_threads(1)
    config = TrainConfig(epochs=2, batch_size=128, n_random=1, seed=0, ema_decay=0.9)
    model, _ = train_locally(space, data, config, run_dir=tmp_path, evaluate=False, log=None)
    checkpoint = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    raw = {
        k.removeprefix(RAW_PREFIX): v for k, v in checkpoint.optimizer.items() if RAW_PREFIX in k
    }
    assert set(raw) == set(checkpoint.model)
    for name, value in model.state_dict().items():  # train_locally hands on the average
        torch.testing.assert_close(value, checkpoint.model[name], rtol=0, atol=0)
    differs = [
        k
        for k in raw
        if raw[k].is_floating_point() and not torch.equal(raw[k], checkpoint.model[k])
    ]
    assert differs  # the average is not the trained weights


def test_an_interrupted_run_with_an_average_resumes_to_the_same_weights(data, tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    torch.set_num_threads(1)
    config = TrainConfig(epochs=3, batch_size=128, n_random=1, seed=1, ema_decay=0.8)
    reference, _ = train_locally(
        space, data, config, run_dir=tmp_path / "a", evaluate=False, log=None
    )

    class Killed(Exception):
        pass

    seen: list[str] = []

    def die_in_third_epoch(line: str) -> None:
        seen.append(line)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        train_locally(space, data, config, run_dir=tmp_path / "b", log=die_in_third_epoch)
    resumed, _ = train_locally(space, data, config, run_dir=tmp_path / "b", log=None)
    for (name, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_warm_start_reproduces_the_checkpoint_accuracy_before_training(data, tmp_path) -> None:
    space = search_spaces.get("tiny_cnn")
    torch.set_num_threads(1)
    first = TrainConfig(epochs=2, batch_size=64, seed=0)
    trained, _ = train_locally(space, data, first, run_dir=tmp_path, evaluate=False, log=None)
    source = latest_checkpoint(tmp_path / "checkpoints")
    before = evaluate_epoch(trained, data, first)
    warm = Trainer.create(space, data, TrainConfig(epochs=1, seed=5, warm_start=str(source)))
    assert evaluate_epoch(warm.model, data, first) == before
    assert before["top1_largest"] > 50.0  # it is a trained network, not a fresh one
    cold = Trainer.create(space, data, TrainConfig(epochs=1, seed=5))
    assert evaluate_epoch(cold.model, data, first) != before


def test_a_warm_start_from_another_space_is_refused(data, tmp_path) -> None:
    train_locally(
        search_spaces.get("tiny_cnn"),
        data,
        TrainConfig(epochs=1, batch_size=64),
        run_dir=tmp_path,
        evaluate=False,
        log=None,
    )
    source = latest_checkpoint(tmp_path / "checkpoints")
    other = search_spaces.get("tiny_cnn", bits=(32,))
    with pytest.raises(IncompatibleArtifactError, match="trained on search space"):
        Trainer.create(other, data, TrainConfig(epochs=1, warm_start=str(source)))


def test_recipe_keys_round_trip_and_default_off() -> None:
    config = TrainConfig()
    assert (config.lr_floor, config.ema_decay, config.warm_start) == (0.0, 0.0, "")
    assert not config.zero_init_residual and config.label_smoothing_on == "all"
    custom = TrainConfig.from_dict(
        {
            "lr_floor": 0.05,
            "ema_decay": 0.99,
            "zero_init_residual": True,
            "label_smoothing_on": "largest",
        }
    )
    assert TrainConfig.from_dict(custom.to_dict()) == custom
    assert not math.isnan(custom.lr_floor)
