"""The command line on bad specs: exit status 2, one message naming the key and the allowed values,
and nothing started (no output directory, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main

ROOT = Path(__file__).resolve().parents[1]

# (spec body, fragments the message must hold: the key, the bad value, the allowed values)
BAD_SPECS: list[tuple[str, str, list[str]]] = [
    ("train-unknown-key", "[train]\nepoch = 3", ["train.epoch", "'epochs'", "'batch_size'"]),
    (
        "train-optimizer",
        '[train]\noptimizer = "adam"',
        ["train.optimizer='adam'", "sgd", "adamw"],
    ),
    (
        "train-lr-schedule",
        '[train]\nlr_schedule = "step"',
        ["train.lr_schedule='step'", "cosine", "constant"],
    ),
    ("train-lr-type", '[train]\nlr = "fast"', ["train.lr='fast'", "number"]),
    ("train-epochs", "[train]\nepochs = 0", ["train.epochs=0", "[1, 10,000]"]),
    (
        "train-phases",
        '[train]\nphases = ["depth", "kernel"]\nphase_epochs = [1, 1]',
        ["train.phases", "largest", "kernel", "depth", "width", "bits"],
    ),
    (
        "train-micro-batches",
        "[train]\nbatch_size = 60\nmicro_batches = 7",
        ["train.batch_size=60", "train.micro_batches=7"],
    ),
    (
        "batch-over-workers",
        "[ray]\nnum_workers = 3",
        ["train.batch_size=64", "ray.num_workers=3"],
    ),
    ("ray-workers", "[ray]\nnum_workers = 0", ["ray.num_workers=0", "[1, 1,024]"]),
    ("ray-unknown-key", "[ray]\nworkers = 2", ["ray.workers", "'num_workers'"]),
    ("top-level-key", "sede = 1", ["sede", "'seed'"]),
    ("seed", "seed = -1", ["seed=-1"]),
    (
        "space-name",
        '[space]\nname = "resnet"',
        ["space.name='resnet'", "tiny_cnn", "mobilenet_like"],
    ),
    ("space-option", '[space]\nname = "tiny_cnn"\noptions = { widths = 3 }', ["widths"]),
    (
        "space-vs-data",
        '[space]\nname = "tiny_cnn"\noptions = { in_channels = 3 }',
        ["'fashion_mnist'", "1 channels", "3 channels", "in_channels"],
    ),
    ("data-kind", '[data]\nkind = "imagenet"', ["data.kind='imagenet'", "digits", "npz"]),
    ("data-path", '[data]\nkind = "npz"\npath = "{tmp}/missing.npz"', ["data.path=", "missing"]),
    (
        "measure-target",
        '[measure]\ntargets = ["cpu_fp32", "tpu"]',
        ["measure.targets[1]='tpu'", "cpu_fp32", "ort_int8"],
    ),
    (
        "measure-split",
        '[measure]\neval_split = "test"',
        ["measure.eval_split='test'", "val"],
    ),
    (
        "objective-target",
        '[search]\nobjectives = ["top1:max", "latency_ms@ort_int8:min"]',
        ["ort_int8", "measure.targets"],
    ),
    (
        "objective-metric",
        '[search]\nobjectives = ["top1:max", "energy_mj:min"]',
        ["energy_mj", "params_m", "latency_ms@cpu_fp32"],
    ),
    ("search-algorithm", '[search]\nalgorithm = "nsga9"', ["search.algorithm='nsga9'", "random"]),
    (
        "predictor-kind",
        '[predictors]\nkind = "xgboost"',
        ["predictors.kind='xgboost'", "gbr", "ridge"],
    ),
    ("export-unknown-key", "[export]\nmax_subnet = 3", ["export.max_subnet", "'max_subnets'"]),
    (
        "target-runtime",
        '[[targets]]\nname = "rpi"\nruntime = "tflite"',
        ["runtime='tflite'", "torch", "onnxruntime"],
    ),
    ("toml-syntax", "[train\nepochs = 2", ["invalid TOML"]),
]


def _write(tmp_path: Path, body: str) -> tuple[Path, Path]:
    out = tmp_path / "out"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'output_dir = "{out}"\n' + body.replace("{tmp}", str(tmp_path)) + "\n")
    return spec, out


def _ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.mark.parametrize("command", ["validate", "run", "train"])
@pytest.mark.parametrize(
    ("body", "fragments"), [(b, f) for _, b, f in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
def test_bad_spec_exits_2_naming_key_and_allowed_values(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    body: str,
    fragments: list[str],
) -> None:
    ray_before = _ray_started()
    spec, out = _write(tmp_path, body)
    assert main([command, str(spec)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = captured.err
    assert message.startswith("error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not out.exists()  # nothing started
    assert _ray_started() == ray_before


def test_workers_option_is_validated_like_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = _write(tmp_path, "")
    for argv in (["run", str(spec), "--workers", "0"], ["train", str(spec), "--workers", "3"]):
        assert main(argv) == 2
        message = capsys.readouterr().err
        assert "ray.num_workers=" in message, message
        assert not out.exists()


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    message = capsys.readouterr().err
    assert "nope.toml" in message and "does not exist" in message


def test_validate_accepts_the_shipped_specs_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default spec's output_dir is relative
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        assert main(["validate", str(path)]) == 0
        assert capsys.readouterr().out == f"{path}: valid\n"
    assert list(tmp_path.iterdir()) == []


def test_entry_point_exit_status(tmp_path: Path) -> None:
    spec, out = _write(tmp_path, '[train]\noptimizer = "adam"')
    result = subprocess.run(
        [sys.executable, "-m", "nas", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "train.optimizer='adam'" in result.stderr and "adamw" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_serve_takes_a_bank_and_a_devices_dir(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--bank" in text and "--devices-dir" in text


def test_targets_lists_a_specs_own_targets_and_what_it_measures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["targets"]) == 0
    builtin = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[measure]\ntargets = ["cpu_fp32", "box_b8"]\n\n'
        '[[targets]]\nname = "box_b8"\nbatch_size = 8\n'
    )
    assert main(["targets", "--spec", str(spec)]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len(rows) == len(builtin) + 1
    assert rows["box_b8"]["batch_size"] == 8
    assert (rows["box_b8"]["declared_in"], rows["box_b8"]["measured"]) == ("spec", True)
    assert (rows["cpu_fp32"]["declared_in"], rows["cpu_fp32"]["measured"]) == ("built-in", True)
    assert not rows["cpu_int8"]["measured"]
    assert all("declared_in" not in r for r in builtin)
