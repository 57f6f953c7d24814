"""Training core (no Ray): config validation, sandwich sampling, BN re-calibration, checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
import torch

import search_spaces
from nas.data.datasets import load_digits_data
from nas.elastic import ElasticBatchNorm2d
from nas.errors import ConfigError, IncompatibleArtifactError, UnsafeFileError
from nas.measure.accuracy import evaluate_accuracy
from nas.supernets.base import Supernet
from nas.training.augment import MAX_SHIFT, augment_batch, random_shift, shift_offsets
from nas.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    latest_checkpoint,
    load_checkpoint,
    load_supernet,
    save_checkpoint,
)
from nas.training.config import PHASES, TrainConfig
from nas.training.loop import make_optimizer, train_locally
from nas.training.recalibrate import recalibrate_bn
from nas.training.sampling import ProgressiveSchedule, dimension_kind, sandwich_configs
from nas.training.step import SandwichObjective, sandwich_backward


@pytest.fixture(scope="module")
def data():
    return load_digits_data(seed=0)


@pytest.fixture(scope="module")
def trained(data):
    """A tiny_cnn supernet trained for 3 epochs in-process (about 5 s on 2 cores)."""
    space = search_spaces.get("tiny_cnn")
    model, metrics = train_locally(
        space, data, TrainConfig(epochs=3, batch_size=64, seed=0), log=None
    )
    return space, model.eval(), metrics


# -- config ---------------------------------------------------------------------------------
BAD_VALUES = {
    "epochs": 0,
    "batch_size": -1,
    "lr": 0,
    "optimizer": "rmsprop",
    "lr_schedule": "linear",
    "n_random": -1,
    "distill": "yes",
    "augment": "crop",
    "micro_batches": 0,
    "label_smoothing": 1.5,
    "eval_split": "train",
    "phases": ("width", "kernel"),
    "lr_floor": 1.5,
    "label_smoothing_on": "students",
    "zero_init_residual": "yes",
    "ema_decay": 1.0,
    "warm_start": 3,
}


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_bad_train_values_name_the_key(key: str) -> None:
    options = {key: BAD_VALUES[key]}
    if key == "phases":
        options["phase_epochs"] = (1, 1)
    with pytest.raises(ConfigError, match=f"train.{key}"):
        TrainConfig(**options)


def test_bad_choice_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match="adamw"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="bits"):
        TrainConfig(phases=("colour",), phase_epochs=(1,))
    with pytest.raises(ConfigError, match=r"train.augment='crop' is not one of.*'shift'"):
        TrainConfig.from_dict({"augment": "crop"})


def test_unknown_train_key_names_allowed_keys() -> None:
    with pytest.raises(ConfigError, match=r"train.learning_rate .*allowed keys.*'lr'"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_phase_epochs_must_fit_the_epochs() -> None:
    with pytest.raises(ConfigError, match="phase_epochs"):
        TrainConfig(epochs=2, phases=("largest", "kernel"), phase_epochs=(2, 2))
    with pytest.raises(ConfigError, match="phase_epochs"):
        TrainConfig(phases=("largest",), phase_epochs=())


def test_config_round_trips_through_dict() -> None:
    config = TrainConfig(phases=("largest", "kernel"), phase_epochs=(1, 2), lr=0.05)
    assert TrainConfig.from_dict(config.to_dict()) == config


# -- sampling ---------------------------------------------------------------------------------
def test_sandwich_subnets_depend_only_on_seed_and_step() -> None:
    space = search_spaces.get("tiny_cnn")
    a = sandwich_configs(space, seed=3, step=10, n_random=4)
    b = sandwich_configs(space, seed=3, step=10, n_random=4)
    c = sandwich_configs(space, seed=3, step=11, n_random=4)
    assert a == b
    assert a[1][1:] != c[1][1:]
    largest, students = a
    assert largest == space.largest()
    assert students[0] == space.smallest()
    assert len(students) == 5


def test_progressive_schedule_opens_dimensions_in_order() -> None:
    config = TrainConfig(
        epochs=6, phases=("largest", "kernel", "depth", "width"), phase_epochs=(1, 1, 1, 1)
    )
    schedule = ProgressiveSchedule.from_config(config)
    assert [schedule.phase(e) for e in range(6)] == [
        "largest", "kernel", "depth", "width", "full", "full"
    ]  # fmt: skip
    assert schedule.elastic_kinds(0) == frozenset()
    assert schedule.elastic_kinds(2) == frozenset({"kernel", "depth"})
    assert schedule.elastic_kinds(4) is None
    space = search_spaces.get("tiny_cnn")
    largest = space.largest()
    for step in range(20):
        _, students = sandwich_configs(
            space, seed=0, step=step, n_random=2, elastic=schedule.elastic_kinds(1)
        )
        for cfg in students:
            for name in space.names:
                if dimension_kind(name) != "kernel":
                    assert cfg[name] == largest[name], name
    assert set(PHASES[1:]) == {dimension_kind(n) for n in space.names}


# -- augmentation -----------------------------------------------------------------------------
def test_shift_augmentation_depends_only_on_seed_step_and_rank(data) -> None:
    x = data.tensors("train")[0][:64]
    a = augment_batch(x, "shift", seed=3, step=10)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, augment_batch(x, "shift", seed=3, step=10), rtol=0, atol=0)
    assert not torch.equal(a, x)
    for seed, step, rank in ((3, 11, 0), (4, 10, 0), (3, 10, 1)):
        assert not torch.equal(a, augment_batch(x, "shift", seed=seed, step=step, rank=rank))
    assert augment_batch(x, "none", seed=3, step=10) is x
    with pytest.raises(ConfigError, match=r"train\.augment"):
        augment_batch(x, "rotate", seed=0, step=0)


def test_shift_is_a_crop_of_the_edge_padded_image() -> None:
    x = torch.randn(40, 2, 8, 8)
    offsets = shift_offsets(40, seed=0, step=0)
    assert offsets.min() >= -MAX_SHIFT and offsets.max() <= MAX_SHIFT
    assert len({tuple(o) for o in offsets}) == (2 * MAX_SHIFT + 1) ** 2  # every shift drawn
    shifted = random_shift(x, offsets)
    padded = torch.nn.functional.pad(x, (MAX_SHIFT,) * 4, mode="replicate")
    for i, (dy, dx) in enumerate(offsets):
        r, c = MAX_SHIFT + dy, MAX_SHIFT + dx
        torch.testing.assert_close(shifted[i], padded[i, :, r : r + 8, c : c + 8])
    torch.testing.assert_close(random_shift(x, np.zeros((40, 2), dtype=int)), x)


def test_augmentation_changes_training(data) -> None:
    space = search_spaces.get("tiny_cnn")
    weights = {}
    for augment in ("none", "shift"):
        config = TrainConfig(epochs=1, batch_size=256, n_random=0, augment=augment)
        model, _ = train_locally(space, data, config, evaluate=False, log=None)
        weights[augment] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(weights["none"], weights["shift"])


# -- step -------------------------------------------------------------------------------------
def test_distillation_changes_student_gradients_only(data) -> None:
    space = search_spaces.get("tiny_cnn")
    x, y = data.tensors("train")
    x, y = x[:32], y[:32]
    largest, students = sandwich_configs(space, seed=0, step=0, n_random=1)
    grads = {}
    for distill in (True, False):
        torch.manual_seed(0)
        model = Supernet(space)
        sandwich_backward(SandwichObjective(model), x, y, largest, students, distill=distill)
        grads[distill] = torch.cat(
            [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        )
    assert not torch.allclose(grads[True], grads[False])
    torch.manual_seed(0)
    model = Supernet(space)
    losses = sandwich_backward(SandwichObjective(model), x, y, largest, [], distill=True)
    assert losses.students == 0.0 and losses.n == 32
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_micro_batches_average_the_chunk_gradients(data) -> None:
    space = search_spaces.get("tiny_cnn")
    x, y = data.tensors("train")
    x, y = x[:64], y[:64]
    largest, students = sandwich_configs(space, seed=0, step=0, n_random=2)
    torch.manual_seed(0)
    whole = Supernet(space)
    sandwich_backward(SandwichObjective(whole), x, y, largest, students, micro_batches=2)
    halves = []
    for xs, ys in zip(x.chunk(2), y.chunk(2), strict=True):
        torch.manual_seed(0)
        half = Supernet(space)
        sandwich_backward(SandwichObjective(half), xs, ys, largest, students)
        halves.append(dict(half.named_parameters()))
    for name, p in whole.named_parameters():
        if p.grad is None:
            continue
        expected = (halves[0][name].grad + halves[1][name].grad) / 2
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)


def test_optimizer_does_not_decay_norms_and_scales() -> None:
    model = Supernet(search_spaces.get("tiny_cnn"))
    groups = make_optimizer(model, TrainConfig(weight_decay=1e-4)).param_groups
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert all(p.dim() <= 1 for p in groups[1]["params"])


# -- BN re-calibration ------------------------------------------------------------------------
def test_recalibrated_statistics_equal_a_direct_pass(trained, data) -> None:
    space, model, _ = trained
    config = space.sample(np.random.default_rng(1))
    calib, _ = data.tensors("calib")
    inputs: dict[str, torch.Tensor] = {}
    probe = copy.deepcopy(model).train()
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: inputs.__setitem__(name, args[0]))
        for name, m in probe.named_modules()
        if isinstance(m, ElasticBatchNorm2d)
    ]
    with torch.no_grad():
        probe(calib, config)  # direct pass in train mode: BN normalises with batch statistics
    for hook in hooks:
        hook.remove()
    model = copy.deepcopy(model)
    recalibrate_bn(model, config, calib)
    assert not model.training
    modules = dict(model.named_modules())
    assert inputs, "no BN layer ran"
    for name, x in inputs.items():
        bn = modules[name]
        c = x.shape[1]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)
        torch.testing.assert_close(bn.running_mean[:c], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var[:c], var, rtol=1e-4, atol=1e-6)
        assert bn.momentum == 0.1


def test_recalibration_changes_accuracy_of_a_small_subnet(trained, data) -> None:
    space, model, _ = trained
    config = space.smallest()
    x, y = data.tensors("val")
    with torch.no_grad():
        stale = float((copy.deepcopy(model).eval()(x, config).argmax(1) == y).float().mean())
    fresh = evaluate_accuracy(copy.deepcopy(model), config, data, split="val", n_calib=256)
    print(f"smallest subnet val top-1: shared BN stats {stale:.3f}, re-calibrated {fresh:.3f}")
    assert fresh > stale + 0.05


def test_training_reaches_accuracy_for_largest_and_smallest(trained) -> None:
    _, _, metrics = trained
    last = metrics.iloc[-1]
    assert last["top1_largest"] >= 85.0
    assert last["top1_smallest"] >= 75.0  # chance is 10 %


# -- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_outputs(trained, data, tmp_path) -> None:
    space, model, _ = trained
    save_checkpoint(
        tmp_path / "ck", model=model, space=space, epoch=3, global_step=9, train_config={}
    )
    loaded, checkpoint = load_supernet(tmp_path / "ck", space=space)
    assert checkpoint.epoch == 3
    x, _ = data.tensors("val")
    for cfg in (space.smallest(), space.largest()):
        torch.testing.assert_close(loaded.eval()(x, cfg), model(x, cfg), rtol=0, atol=0)
    rebuilt, _ = load_supernet(tmp_path / "ck")
    assert rebuilt.space.fingerprint() == space.fingerprint()


def test_pickle_in_a_checkpoint_is_refused(trained, tmp_path) -> None:
    space, model, _ = trained
    directory = save_checkpoint(
        tmp_path / "ck", model=model, space=space, epoch=1, global_step=1, train_config={}
    )
    torch.save(model.state_dict(), directory / MODEL_FILE)  # a zip of pickles
    with pytest.raises(UnsafeFileError, match="pickle"):
        load_checkpoint(directory)
    raw = tmp_path / "weights.safetensors"
    raw.write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(UnsafeFileError, match="pickle"):
        load_checkpoint(raw)


def test_checkpoint_of_another_space_is_refused(trained, tmp_path) -> None:
    space, model, _ = trained
    save_checkpoint(
        tmp_path / "ck", model=model, space=space, epoch=1, global_step=1, train_config={}
    )
    other = search_spaces.get("tiny_cnn", bits=(8, 32))
    with pytest.raises(IncompatibleArtifactError, match="fingerprint"):
        load_supernet(tmp_path / "ck", space=other)


def test_unfinished_checkpoints_are_never_resumed_from(trained, tmp_path) -> None:
    space, model, _ = trained
    for epoch in (1, 2, 3):
        save_checkpoint(
            tmp_path / f"e{epoch}",
            model=model,
            space=space,
            epoch=epoch,
            global_step=epoch,
            train_config={},
        )
    (tmp_path / "e3" / STATE_FILE).unlink()  # killed before its state was written
    assert latest_checkpoint(tmp_path) == tmp_path / "e2"


@pytest.mark.parametrize("augment", ["none", "shift"])
def test_interrupted_local_training_resumes_to_the_same_weights(
    data, tmp_path, augment: str
) -> None:
    space = search_spaces.get("tiny_cnn")
    config = TrainConfig(epochs=3, batch_size=128, n_random=1, seed=1, augment=augment)
    torch.set_num_threads(1)
    reference, _ = train_locally(
        space, data, config, run_dir=tmp_path / "a", evaluate=False, log=None
    )

    class Killed(Exception):
        pass

    seen: list[str] = []

    def die_in_third_epoch(line: str) -> None:
        seen.append(line)
        if len(seen) == 3:  # epoch 3 trained, its checkpoint not yet written
            raise Killed

    with pytest.raises(Killed):
        train_locally(space, data, config, run_dir=tmp_path / "b", log=die_in_third_epoch)
    assert load_checkpoint(latest_checkpoint(tmp_path / "b")).epoch == 2
    resumed, metrics = train_locally(space, data, config, run_dir=tmp_path / "b", log=None)
    assert list(metrics["epoch"]) == [0, 1, 2]
    for (name, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_frozen_config_is_hashable_and_replaceable() -> None:
    config = TrainConfig()
    assert dataclasses.replace(config, epochs=1).epochs == 1
    hash(config)
