"""The Vision Transformer family beyond the shared conformance suite: its own shapes and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import search_spaces
from nas.errors import ConfigError
from nas.supernets.base import Supernet
from nas.supernets.vit.supernet import ViTSupernet

REPO = Path(__file__).resolve().parents[1]


def test_heads_slice_the_same_groups_of_q_k_and_v() -> None:
    space = search_spaces.get("vit_tiny")
    net = Supernet(space).eval()
    assert isinstance(net, ViTSupernet)
    cfg = space.largest().replace(**{"l0.heads": 1})
    qkv = net.export(cfg).blocks[0].attention.qkv[-1]
    shared = net.blocks[0].qkv.weight
    hd, max_width, e = net.arch.head_dim, net.arch.heads[-1] * net.arch.head_dim, 32
    for g in range(3):  # q, k and v: the first head of each
        torch.testing.assert_close(
            qkv.weight[g * hd : (g + 1) * hd], shared[g * max_width : g * max_width + hd, :e]
        )


def test_mean_pooling_variant_exports_exactly() -> None:
    space = search_spaces.get("vit_tiny", pooling="mean")
    net = Supernet(space).eval()
    x = torch.randn(2, 1, 8, 8)
    for cfg in space.sample_many(5, np.random.default_rng(0)):
        with torch.no_grad():
            assert torch.equal(net(x, cfg), net.export(cfg)(x))
    assert net.cls_token is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"heads": (1, 2, 5)},
            r"space\.options\.heads: 5 heads do not divide the largest "
            r"embed_dim 32; allowed head counts: \[1, 2, 4, 8, 16, 32\]",
        ),
        (
            {"patch_size": 3},
            r"space\.options\.patch_size=3 must divide resolution 8; "
            r"allowed: \[1, 2, 4, 8\]",
        ),
        ({"depths": (0, 1)}, r"space\.options\.depths=\[0, 1\] must all be >= 1"),
        ({"embed_dims": (32, 16)}, r"space\.options\.embed_dims=\[32, 16\] must be .*ascending"),
        ({"pooling": "max"}, r"space\.options\.pooling='max' is not one of \('cls', 'mean'\)"),
        ({"bits": (1, 32)}, r"space\.options\.bits=1 is not one of"),
    ],
)
def test_bad_architectures_are_refused_naming_the_key(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        search_spaces.get("vit_tiny", **options)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depth": 4}, r"depth=4 is not one of \[1, 2, 3\]"),
        ({"l0.heads": 3}, r"l0\.heads=3 is not one of \[1, 2\]"),
        ({"embed_dim": 20}, r"embed_dim=20 is not one of \[16, 24, 32\]"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(change: dict, message: str) -> None:
    space = search_spaces.get("vit_tiny")
    bad = {**space.largest().to_dict(), **change}
    with pytest.raises(ConfigError, match=message):
        space.validate(bad)


def test_unknown_dimension_is_refused_with_the_allowed_names() -> None:
    space = search_spaces.get("vit_tiny")
    with pytest.raises(ConfigError, match=r"l9\.heads"):
        space.validate({**space.largest().to_dict(), "l9.heads": 1})


def test_nas_validate_refuses_heads_that_do_not_divide_the_embedding(tmp_path: Path) -> None:
    text = (REPO / "experiments" / "vit_fashion.toml").read_text()
    text = text.replace(
        'name = "vit_fashion"       #', 'name = "vit_fashion"\noptions = { heads = [2, 5] }\n#'
    )
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "nas", "validate", str(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "space.options.heads: 5 heads do not divide the largest embed_dim 96" in errors[0]
    assert "Traceback" not in done.stderr


def test_inference_weight_cache_follows_every_change_of_the_shared_weights() -> None:
    """No-grad forwards reuse sliced, quantized weights until a shared tensor changes."""
    space = search_spaces.get("vit_tiny")
    torch.manual_seed(0)
    net = Supernet(space)
    cfg = space.validate({**space.largest().to_dict(), "l0.bits": 4, "l1.bits": 8})
    x = torch.randn(4, 1, 8, 8)
    net.eval()
    with torch.no_grad():
        before = net(x, cfg)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    net(x, cfg).square().mean().backward()
    optimizer.step()  # in place: the cached weights are stale now
    net.eval()
    with torch.no_grad():
        after = net(x, cfg)
        assert not torch.equal(after, before)
        assert torch.equal(after, net.export(cfg).eval()(x))
        net.load_state_dict(Supernet(space).state_dict())  # copied in: stale again
        assert torch.equal(net(x, cfg), net.export(cfg).eval()(x))
