"""The Vision Transformer job end to end, reduced: a small elastic ViT on Fashion-MNIST.

The same pipeline as the CNN (Ray Train with the sandwich rule and in-place distillation,
measurement, predictors, search over accuracy × latency × size with per-block bits, export)
with no family-specific step: there is no BatchNorm to re-calibrate, so the cards say so, and
the exported front obeys the same rules as the CNN family's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.artifacts.export import exported_paths, load_exported, read_card
from nas.pipeline import run_experiment
from nas.spec.config import ExperimentSpec
from nas.supernets.vit.static import ViTSubnet
from tests.front_checks import check_exported_front

REPO = Path(__file__).resolve().parents[1]
TARGET = "cpu_fp32_b64"
OBJECTIVES = [("top1", "max"), (f"latency_ms@{TARGET}", "min"), ("model_size_bytes", "min")]


def _reduced_spec(out: Path) -> str:
    """``experiments/vit_fashion.toml`` with a small space, one epoch and small splits."""
    text = (REPO / "experiments" / "vit_fashion.toml").read_text()
    replacements = {
        'output_dir = "runs/vit_fashion"': f'output_dir = "{out}"',
        'name = "vit_fashion"       #': (
            'name = "vit_fashion"\noptions = { embed_dims = [16, 32], depths = [1, 2], '
            "heads = [1, 2], mlp_ratios = [1.0, 2.0] }\n#"
        ),
        "train_size = 12000": "train_size = 1024",
        "val_size = 2000": "val_size = 500",
        "calib_size = 500": "calib_size = 200",
        "epochs = 5": "epochs = 1",
        "n_samples = 96": "n_samples = 16\nlatency_repeats = 5\nlatency_warmup = 1",
        "calib_images = 256": "calib_images = 200",
        "budget = 400": "budget = 48",
        "max_subnets = 8": "max_subnets = 4",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import ray

    ray.shutdown()
    directory = tmp_path_factory.mktemp("vit")
    out = directory / "run"
    spec_path = directory / "vit.toml"
    spec_path.write_text(_reduced_spec(out))
    run_experiment(ExperimentSpec.from_toml(spec_path), log=lambda _: None)
    ray.shutdown()
    return out


@pytest.mark.ray
@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore::nas.measure.latency.NoisyMeasurementWarning")
def test_vit_run_exports_a_true_front_of_static_transformers(vit_run: Path) -> None:
    cards = check_exported_front(vit_run, OBJECTIVES, targets=[TARGET], max_subnets=4)
    assert cards
    for card in cards:
        assert card["bn_recalibration"] is None  # a transformer has no BatchNorm
        assert card["accuracy"]["test"]["n_images"] == 10000
        assert card["search_space"]["name"] == "vit_fashion"
    for directory in exported_paths(vit_run / "export"):
        module = load_exported(directory)
        assert isinstance(module, ViTSubnet)
        assert (directory / "model.onnx").exists()
        assert read_card(directory)["config"]["depth"] in (1, 2)
