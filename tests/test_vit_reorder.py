"""Importance re-ordering of ViT heads and MLP neurons (DynaBERT / Minitron) before elastic
training.

Re-ordering must leave the largest subnet's function unchanged (it only permutes whole head
groups and hidden neurons), change what smaller prefixes see, carry the optimizer state along,
and be refused where it cannot apply.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import search_spaces
from nas.data.datasets import load_data
from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet
from nas.supernets.vit.supernet import ViTSupernet, vit_arch
from nas.training.config import TrainConfig
from nas.training.loop import Trainer, make_optimizer, reorders_after, train_locally


def _space() -> SearchSpace:
    return search_spaces.get("vit_tiny")


def _net(space: SearchSpace) -> ViTSupernet:
    """A supernet with weights far from initialisation, so importances differ clearly."""
    torch.manual_seed(0)
    net = Supernet(space)
    assert isinstance(net, ViTSupernet)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return net.eval()


def _smaller(space: SearchSpace) -> SubnetConfig:
    """The largest config with fewest heads and the smallest MLP ratio in every block."""
    largest = space.largest()
    arch = vit_arch(space)
    return largest.replace(
        **{f"l{j}.heads": arch.heads[0] for j in range(arch.max_depth)},
        **{f"l{j}.mlp_ratio": arch.mlp_ratios[0] for j in range(arch.max_depth)},
    )


@pytest.mark.parametrize("source", ["activations", "weights"])
def test_largest_unchanged_smaller_changed(source: str) -> None:
    space = _space()
    net = _net(space)
    x = torch.randn(16, 1, 8, 8)
    small = _smaller(space)
    with torch.no_grad():
        before_large, before_small = net(x, space.largest()), net(x, small)
        orders = net.reorder_by_importance(x if source == "activations" else None)
        after_large, after_small = net(x, space.largest()), net(x, small)
    torch.testing.assert_close(after_large, before_large, rtol=1e-5, atol=1e-5)
    assert (after_small - before_small).abs().max() > 1e-3
    assert any(o["heads"] != sorted(o["heads"]) for o in orders)
    assert any(o["neurons"] != sorted(o["neurons"]) for o in orders)
    for cfg in (space.largest(), small):  # export still equals the supernet exactly
        with torch.no_grad():
            assert torch.equal(net(x, cfg), net.export(cfg)(x))


@pytest.mark.parametrize("source", ["activations", "weights"])
def test_reordered_importance_is_descending(source: str) -> None:
    space = _space()
    net = _net(space)
    x = torch.randn(16, 1, 8, 8)
    net.reorder_by_importance(x if source == "activations" else None)
    with torch.no_grad():
        tokens = net.full_tokens(x) if source == "activations" else None
        heads = net.blocks[0].head_importance(tokens)
    assert torch.all(heads[:-1] >= heads[1:] - 1e-6)


def test_optimizer_state_moves_with_the_weights() -> None:
    """Re-order mid-training: the next AdamW step gives the same largest subnet as without."""
    space = _space()
    config = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.05)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    net = _net(space).train()
    optimizer = make_optimizer(net, config)

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x, space.largest()), y).backward()
        opt.step()

    step(net, optimizer)
    twin = copy.deepcopy(net)
    twin_optimizer = make_optimizer(twin, config)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # no shared tensors
    net.reorder_by_importance(x, optimizer)
    for _ in range(2):
        step(net, optimizer)
        step(twin, twin_optimizer)
    net.eval()
    twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x, space.largest()), twin(x, space.largest()))
        assert not torch.equal(net.blocks[0].fc1.weight, twin.blocks[0].fc1.weight)


def test_reorder_runs_once_at_the_end_of_the_largest_phase() -> None:
    config = TrainConfig(
        epochs=3, batch_size=64, phases=("largest",), phase_epochs=(2,), reorder="activations"
    )
    assert [reorders_after(config, e) for e in range(3)] == [False, True, False]
    assert not reorders_after(TrainConfig(epochs=3, phases=("largest",), phase_epochs=(2,)), 1)


def test_training_with_reorder_changes_only_the_order() -> None:
    """The hook inside training: after the largest phase, the largest subnet's outputs survive."""
    space = _space()
    data = load_data("digits", seed=0)
    base = dict(epochs=1, batch_size=64, optimizer="adamw", lr=2e-3, n_random=1)
    plain, _ = train_locally(
        space,
        data,
        TrainConfig(**base, phases=("largest",), phase_epochs=(1,)),
        log=None,
        evaluate=False,
    )
    reordered, _ = train_locally(
        space,
        data,
        TrainConfig(**base, phases=("largest",), phase_epochs=(1,), reorder="weights"),
        log=None,
        evaluate=False,
    )
    x = data.tensors("val")[0][:64]
    plain.eval()
    reordered.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reordered(x, space.largest()), plain(x, space.largest()), rtol=1e-4, atol=1e-4
        )
        small = _smaller(space)
        assert not torch.allclose(reordered(x, small), plain(x, small))


def test_reorder_needs_the_largest_phase() -> None:
    with pytest.raises(ConfigError, match=r"train\.reorder='activations' .* train\.phases"):
        TrainConfig(reorder="activations")


def test_family_without_reorder_refuses_naming_the_key() -> None:
    space = search_spaces.get("tiny_cnn")
    data = load_data("digits", seed=0)
    config = TrainConfig(epochs=1, phases=("largest",), phase_epochs=(1,), reorder="weights")
    with pytest.raises(ConfigError, match=r"^train\.reorder='weights' is not supported by "):
        Trainer.create(space, data, config)


def test_validate_refuses_reorder_for_a_family_without_it(tmp_path: Path) -> None:
    from nas.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "r"\noutput_dir = "{tmp_path / "out"}"\n[space]\nname = "tiny_cnn"\n'
        '[data]\nkind = "digits"\n[train]\nphases = ["largest"]\nphase_epochs = [1]\n'
        'reorder = "weights"\n[measure]\ntargets = ["cpu_fp32"]\n'
        '[search]\nobjectives = ["top1:max", "latency_ms@cpu_fp32:min"]\n'
    )
    assert main(["validate", str(spec)]) == 2
    assert not (tmp_path / "out").exists()
