"""The whole experiment pipeline on real Ray: end to end, SIGKILL and resume, a two-node cluster.

Nothing is mocked: Ray Train trains the supernet, subnets are measured (accuracy after BN
re-calibration, latency on this CPU), predictors are fitted, pymoo searches, and the front is
exported to safetensors and ONNX. Specs are reduced (2 epochs, 16 subnets, 60 evaluations) so
the tier stays in minutes on 2 CPU cores.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nas.artifacts.export import (
    exported_paths,
    file_sha256,
    library_versions,
    load_exported,
    read_card,
)
from nas.pipeline import STAGE_FUNCTIONS, ResolvedExperiment, RunContext, run_experiment
from nas.pipeline.run_dir import StaleStagesError, inside_run
from nas.results import ResultStore
from nas.space import SearchSpace
from nas.spec.config import ExperimentSpec
from nas.subnet import SubnetConfig
from nas.training.sampling import dimension_kind
from tests.front_checks import check_exported_front

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
name = "pipeline_test"
seed = 0
output_dir = "{output_dir}"

[space]
name = "tiny_cnn"

[data]
kind = "digits"

[train]
epochs = 2
batch_size = 64
lr = 0.1

[ray]
num_workers = {workers}

[measure]
targets = ["cpu_fp32"]
n_samples = {n_samples}
latency_repeats = {latency_repeats}
latency_warmup = {latency_warmup}

[predictors]
kind = "ridge"

[search]
algorithm = "pymoo-nsga2"
objectives = ["top1:max", "latency_ms@cpu_fp32:min"]
budget = 60
use_predictors = true

[export]
onnx = true
max_subnets = 3
"""

# ONNX vs torch: onnxruntime sums in another order, so a fake-quantized activation that sits on a
# rounding edge can land in the neighbouring bin. Most images agree to float precision; the rest
# differ by such a bin flip, bounded relative to the logits. One bin of a b-bit quantizer is
# 1/(2**b - 1) of its range: a 4-bit flip moved a logit by 3.6 % and 5.7 % of the largest |logit|
# (1 and 2 of 270 test images, two front subnets of one run), so the bound follows the coarsest
# quantizer of the subnet.
ONNX_ATOL = ONNX_RTOL = 1e-4  # per-image agreement for ...
ONNX_MIN_SHARE_CLOSE = 0.95  # ... at least this share of test images
ONNX_MAX_REL_FLIP = 0.02  # every logit within this fraction of the largest |logit|, or within ...
ONNX_MAX_FLIP_BINS = 2  # ... this many bins of the subnet's coarsest quantizer, if larger
ONNX_MIN_ARGMAX_AGREEMENT = 0.98
# 5 latency repeats on a shared 2-core machine are noisy, and the measurement says so
NOISY_IS_EXPECTED = "ignore::nas.measure.latency.NoisyMeasurementWarning"


def write_spec(
    directory: Path,
    *,
    output_dir: Path,
    workers: int = 1,
    n_samples: int = 16,
    latency_repeats: int = 5,
    latency_warmup: int = 1,
) -> Path:
    path = directory / "spec.toml"
    path.write_text(
        SPEC.format(
            output_dir=output_dir,
            workers=workers,
            n_samples=n_samples,
            latency_repeats=latency_repeats,
            latency_warmup=latency_warmup,
        )
    )
    return path


def nas_command(spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nas", "run", str(spec), *extra]


def local_ray_env() -> dict[str, str]:
    """Environment for a `nas run` subprocess that must start its own local Ray instance.

    ``ray.init()`` without an address joins the newest ``ray start`` cluster on the machine if
    one is up (another test's, say); ``RAY_ADDRESS=local`` makes it start a fresh instance.
    """
    return {**os.environ, "RAY_ADDRESS": "local"}


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _checkpoint_sha256(checkpoint: Path) -> str:
    """The model card's checkpoint identity: sha256 over (file name, file sha256), sorted."""
    digest = hashlib.sha256()
    for f in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        digest.update(f.name.encode())
        digest.update(file_sha256(f).encode())
    return digest.hexdigest()


def _objective_matrix(exp: ResolvedExperiment, rows: pd.DataFrame) -> np.ndarray:
    """Measured objectives as a minimisation matrix (maximised ones negated)."""
    columns = []
    for objective in exp.problem.objectives:
        values = rows[f"{objective.key}.measured"].to_numpy(dtype=float)
        columns.append(-values if objective.direction == "max" else values)
    return np.column_stack(columns)


def _check_front(exp: ResolvedExperiment) -> pd.DataFrame:
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    front = pd.read_csv(exp.stage_dir("search") / "front.csv")
    on_front = front["measured_on_front"].astype(bool).to_numpy()
    assert on_front.any()
    nds = NonDominatedSorting()
    measured = _objective_matrix(exp, front[on_front])
    # the rows marked measured_on_front are mutually non-dominated ...
    assert len(nds.do(measured, only_non_dominated_front=True)) == len(measured)
    # ... and they are exactly the non-dominated rows of the measured front
    everything = _objective_matrix(exp, front)
    expected = np.zeros(len(front), dtype=bool)
    expected[nds.do(everything, only_non_dominated_front=True)] = True
    np.testing.assert_array_equal(on_front, expected)
    return front


def _check_journal(exp: ResolvedExperiment) -> None:
    """The search's studies: predicted values named so, and every measured subnet in one."""
    import optuna

    from nas.pipeline.context import measured_subnets
    from nas.search.optuna_record import distributions, open_journal

    storage = open_journal(exp.stage_dir("search") / "optuna.journal")
    names = {s.study_name for s in storage.get_all_studies()}
    run = exp.spec.name
    assert names == {f"{run}.search.predicted", f"{run}.measured_front", f"{run}.measured"}
    predicted = optuna.load_study(study_name=f"{run}.search.predicted", storage=storage)
    assert predicted.user_attrs["source"] == "predicted"
    measured = optuna.load_study(study_name=f"{run}.measured", storage=storage)
    keys = [t.user_attrs["config_key"] for t in measured.trials]
    assert len(keys) == len(set(keys)) == len({s.config.key for s in measured_subnets(exp)})
    assert all(t.distributions == distributions(exp.space) for t in measured.trials)


def _onnx_max_rel_diff(space: SearchSpace, config: SubnetConfig) -> float:
    """The largest ONNX-vs-torch logit difference allowed, relative to the largest |logit|."""
    bits = [
        int(config[d.name])  # type: ignore[arg-type]
        for d in space.dims
        if dimension_kind(d.name) == "bits" and space.is_active(config, d.name)
    ]
    quantized = [b for b in bits if b < 32]
    if not quantized:
        return ONNX_MAX_REL_FLIP
    return max(ONNX_MAX_REL_FLIP, ONNX_MAX_FLIP_BINS / (2 ** min(quantized) - 1))


def _check_onnx(path: Path, x: torch.Tensor, reference: torch.Tensor, max_rel: float) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    out = session.run(None, {name: x.numpy()})[0]
    ref = reference.numpy()
    assert out.shape == ref.shape
    close = np.all(np.isclose(out, ref, atol=ONNX_ATOL, rtol=ONNX_RTOL), axis=1)
    assert close.mean() >= ONNX_MIN_SHARE_CLOSE, f"{path}: {close.mean():.3f} of images close"
    worst = float(np.abs(out - ref).max())
    assert worst <= max_rel * float(np.abs(ref).max()), f"{path}: max |diff| {worst}"
    agreement = float((out.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= ONNX_MIN_ARGMAX_AGREEMENT, f"{path}: argmax agreement {agreement}"


def _check_exports(exp: ResolvedExperiment, front: pd.DataFrame) -> None:
    from nas.training.checkpoint import load_supernet
    from nas.training.recalibrate import recalibrate_bn

    spec = exp.spec
    export_dir = exp.stage_dir("export")
    train_done = json.loads((exp.stage_dir("train") / "DONE.json").read_text())
    checkpoint = inside_run(exp.root, train_done["checkpoint"])
    assert not Path(train_done["checkpoint"]).is_absolute()  # the run moves as a folder
    supernet, _ = load_supernet(checkpoint, space=exp.space)
    data = RunContext(exp).data
    calib_x, _ = data.tensors("calib")
    calib_x = calib_x[: spec.measure.calib_images]
    x, y = data.tensors("test")

    check_exported_front(
        exp.root,
        [("top1", "max"), ("latency_ms@cpu_fp32", "min")],
        targets=["cpu_fp32"],
        max_subnets=spec.export.max_subnets,
    )
    directories = exported_paths(export_dir)
    by_key = front.set_index("config_key")
    store = ResultStore(exp.stage_dir("measure") / "results.jsonl")
    final = ResultStore(export_dir / "latency.jsonl")
    versions = library_versions()
    assert data.preprocessing is not None
    raw_x = data.preprocessing.denormalise(x).round()  # the digits' integer pixels, 0..16
    for directory in directories:
        card = read_card(directory)
        config = exp.space.validate(card["config"])
        assert card["config_key"] == config.key
        assert directory.name.endswith(config.key)
        assert card["preprocessing"]["raw_range"] == [0.0, 16.0]

        # the exported module equals the supernet's subnet after BN re-calibration
        model = load_exported(directory)
        assert not model.training
        recalibrate_bn(supernet, config, calib_x)
        supernet.eval()
        with torch.no_grad():
            expected = supernet(x, config)
            got = model(x)
        torch.testing.assert_close(got, expected)
        # the ONNX graph takes raw pixels: the normalisation travels inside it
        _check_onnx(
            directory / "model.onnx", raw_x, expected, _onnx_max_rel_diff(exp.space, config)
        )

        # the card: measured (= the stores) and predicted (= the search) metrics, provenance
        measured = card["metrics"]["measured"]
        assert {"top1", "top1_test", "latency_ms@cpu_fp32", "params_m", "macs_m"} <= set(measured)
        accuracy = store.get(config, "any")
        latency = final.get(config, "cpu_fp32")  # re-measured beside the other contenders
        assert accuracy is not None and latency is not None
        assert measured["top1"] == pytest.approx(accuracy.metrics["top1"])
        assert measured["latency_ms@cpu_fp32"] == pytest.approx(latency.metrics["latency_ms"])
        test_top1 = 100.0 * float((expected.argmax(1) == y).float().mean())
        assert measured["top1_test"] == pytest.approx(test_top1)
        n_test, n_val = len(y), data.sizes()["val"]
        report = card["accuracy"]
        assert report["selection_split"] == "val"
        assert report["test"]["n_images"] == n_test and report["val"]["n_images"] == n_val
        assert report["test"]["top1"] == pytest.approx(test_top1)
        low, high = report["test"]["ci95"]
        assert low < test_top1 < high or test_top1 in (0.0, 100.0)
        assert report["val"]["top1"] == pytest.approx(measured["top1"])
        if config.key in by_key.index:
            for key, value in card["metrics"]["predicted"].items():
                assert value == pytest.approx(by_key.loc[config.key, f"{key}.predicted"])
        assert inside_run(exp.root, card["supernet_checkpoint"]) == checkpoint
        assert card["supernet_checkpoint_sha256"] == _checkpoint_sha256(checkpoint)
        assert card["weights_sha256"] == file_sha256(directory / "model.safetensors")
        assert card["seed"] == spec.seed
        assert card["versions"] == versions
        assert card["versions"]["torch"] == torch.__version__
        assert [t["name"] for t in card["hardware_targets"]] == ["cpu_fp32"]

    table = pd.read_csv(export_dir / "front.csv")
    assert sorted(table["subnet"]) == [d.name for d in directories]
    assert {"top1.measured", "top1_test.measured", "latency_ms@cpu_fp32.measured"} <= set(table)
    assert {"top1_test.ci95_low", "top1_test.n_images"} <= set(table)
    png = (export_dir / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def _check_done(exp: ResolvedExperiment) -> None:
    for stage in STAGE_FUNCTIONS:
        marker = exp.stage_dir(stage) / "DONE.json"
        assert marker.exists(), f"{stage} has no DONE.json"
        assert "finished_at" in json.loads(marker.read_text())


@pytest.mark.ray
@pytest.mark.timeout(420)
@pytest.mark.filterwarnings(NOISY_IS_EXPECTED)
def test_pipeline_end_to_end(tmp_path: Path, local_ray: None) -> None:
    spec = ExperimentSpec.from_toml(write_spec(tmp_path, output_dir=tmp_path / "run"))
    log: list[str] = []
    exp = run_experiment(spec, log=log.append)
    assert exp.root == tmp_path / "run"
    _check_done(exp)
    assert json.loads((exp.root / "spec.json").read_text())["name"] == "pipeline_test"
    attempts = sorted(p.name for p in (exp.stage_dir("train") / "ray").glob("attempt_*"))
    assert attempts == ["attempt_000"]
    metrics = pd.read_csv(exp.stage_dir("train") / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1]
    front = _check_front(exp)
    _check_journal(exp)
    _check_exports(exp, front)

    # a rerun skips every stage
    log.clear()
    run_experiment(spec, log=log.append)
    assert [line for line in log if "skipped" in line] == [
        f"[{stage}] done before with the same spec; skipped" for stage in STAGE_FUNCTIONS
    ]
    _check_changed_spec_and_moved_run(spec, exp, tmp_path)


def _check_changed_spec_and_moved_run(
    spec: ExperimentSpec, exp: ResolvedExperiment, tmp_path: Path
) -> None:
    """A changed spec is refused naming its keys; --force redoes only what changed; moves work."""
    saved_spec = (exp.root / "spec.json").read_text()
    changed = dataclasses.replace(
        spec,
        search=dataclasses.replace(spec.search, budget=spec.search.budget + 8),
        predictors=dataclasses.replace(spec.predictors, kind="gbr"),
    )
    with pytest.raises(StaleStagesError) as info:
        run_experiment(changed, log=lambda _: None)
    message = str(info.value)
    assert "search.budget" in message and "predictors.kind" in message and "--force" in message
    assert "train" not in message.split("Stages")[1].split("would")[0]
    assert (exp.root / "spec.json").read_text() == saved_spec  # nothing written

    # --force redoes only the stages whose inputs changed; the old outputs are kept aside
    fewer = dataclasses.replace(spec, export=dataclasses.replace(spec.export, max_subnets=2))
    log: list[str] = []
    run_experiment(fewer, log=log.append, force=True)
    skipped = [line.split("]")[0][1:] for line in log if "skipped" in line]
    assert skipped == ["train", "measure", "predictors", "search"]
    (superseded,) = (exp.root / "superseded").iterdir()
    assert [p.name for p in superseded.iterdir()] == ["export"]
    assert len(exported_paths(exp.stage_dir("export"))) <= 2

    # the run directory moves as a folder: every stage skipped, its own weights loaded
    original = str(exp.root.resolve())
    for f in exp.root.rglob("*"):
        ray_own = "ray" in f.relative_to(exp.root).parts  # Ray Train's bookkeeping
        if f.suffix in (".json", ".jsonl", ".csv") and not ray_own and f.name != "spec.json":
            assert original not in f.read_text(), f"{f} records an absolute path"
    moved = tmp_path / "moved"
    shutil.move(str(exp.root), str(moved))
    log.clear()
    moved_exp = run_experiment(fewer, output_dir=moved, log=log.append)
    assert sum("skipped" in line for line in log) == len(STAGE_FUNCTIONS)
    train_done = json.loads((moved / "train" / "DONE.json").read_text())
    checkpoint = inside_run(moved, train_done["checkpoint"])
    assert checkpoint.resolve().is_relative_to(moved.resolve()) and checkpoint.exists()
    assert RunContext(moved_exp).supernet is not None
    for card_dir in exported_paths(moved / "export"):
        card = read_card(card_dir)
        assert inside_run(moved, card["supernet_checkpoint"]).exists()


# -- kill and resume ----------------------------------------------------------------------------
def _session_processes(sid: int) -> dict[int, str]:
    """Live (non-zombie) processes of session ``sid``: pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, _ppid, _pgrp, session = text[text.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            found[int(stat.parent.name)] = cmdline.strip()
    return found


RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _is_worker(cmdline: str) -> bool:
    """A Ray worker process (task or actor), as opposed to the driver and Ray's services."""
    if "default_worker.py" in cmdline or "setup_worker.py" in cmdline:
        return True
    return cmdline.startswith("ray::") and not cmdline.startswith(RAY_AGENTS)


def _wait_until_gone(sid: int, timeout: float, *, workers: bool = True) -> dict[int, str]:
    """Wait for session ``sid``'s processes (only non-workers unless ``workers``) to exit."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: c for p, c in _session_processes(sid).items() if workers or not _is_worker(c)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _lines(path: Path) -> list[str]:
    """Complete lines of an append-only JSONL file (a torn last line is not complete)."""
    if not path.exists():
        return []
    text = path.read_text()
    return text.split("\n")[:-1]


def _targets(lines: list[str]) -> collections.Counter[str]:
    return collections.Counter(json.loads(line)["target"] for line in lines)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.timeout(600)
def test_sigkill_inside_measure_then_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    n_samples = 24
    # slow latency measurements (many repeats) give the kill a wide window inside `measure`
    spec = write_spec(
        tmp_path, output_dir=out, n_samples=n_samples, latency_repeats=300, latency_warmup=5
    )
    results = out / "measure" / "results.jsonl"
    train_done = out / "train" / "DONE.json"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        nas_command(spec),
        cwd=REPO,
        env=local_ray_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 400
        # accuracy records arrive together, then latency records one by one: kill once some,
        # but not all, latency records are stored
        while not (train_done.exists() and _targets(_lines(results))["cpu_fp32"] >= 2):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never got inside measure"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL

    before_lines = _lines(results)
    before_targets = _targets(before_lines)
    assert not (out / "measure" / "DONE.json").exists(), "killed after measure finished"
    assert before_targets["any"] == n_samples
    assert 2 <= before_targets["cpu_fp32"] < n_samples
    train_marker = train_done.read_bytes()
    attempts = sorted(p.name for p in (out / "train" / "ray").glob("attempt_*"))
    assert attempts == ["attempt_000"]
    checkpoints = sorted(p.name for p in (out / "train" / "ray" / "attempt_000").iterdir())

    # the driver's Ray instance (GCS, raylet, agents) dies with it; a worker that was still
    # starting has no raylet left and exits on its own (checked after the rerun)
    core = _wait_until_gone(proc.pid, 30, workers=False)
    assert not core, f"Ray processes of the killed run still alive: {core}"

    rerun = subprocess.Popen(
        nas_command(spec),
        cwd=REPO,
        env=local_ray_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = rerun.communicate(timeout=400)
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
            rerun.wait()
    assert rerun.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "[train] done before with the same spec; skipped" in stdout
    assert "[measure] running" in stdout

    # training was not redone: same marker, no new Ray Train attempt, same checkpoints
    assert train_done.read_bytes() == train_marker
    assert sorted(p.name for p in (out / "train" / "ray").glob("attempt_*")) == attempts
    assert sorted(p.name for p in (out / "train" / "ray" / "attempt_000").iterdir()) == checkpoints

    # measurements finished before the kill were kept and not repeated
    after_lines = _lines(results)
    assert results.read_text().endswith("\n")
    assert after_lines[: len(before_lines)] == before_lines
    records = [json.loads(line) for line in after_lines]
    counts = collections.Counter((r["config_key"], r["target"], r["source"]) for r in records)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    measure_done = json.loads((out / "measure" / "DONE.json").read_text())
    assert measure_done["n_configs"] == n_samples
    for stage in STAGE_FUNCTIONS:
        assert (out / stage / "DONE.json").exists()
    assert exported_paths(out / "export")

    left = _wait_until_gone(proc.pid, 120)
    assert not left, f"processes of the killed run still alive: {left}"
    left = _wait_until_gone(rerun.pid, 60)
    assert not left, f"processes of the finished rerun still alive: {left}"


# -- two-node cluster ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_on_a_two_node_cluster_with_two_train_workers(tmp_path: Path) -> None:
    import ray

    from tests.ray_cluster import two_node_cluster

    ray.shutdown()  # two_node_cluster stops every Ray process here: hold no instance
    out = tmp_path / "run"
    spec = write_spec(tmp_path, output_dir=out)
    with two_node_cluster(cpus_per_node=1) as address:
        done = subprocess.run(
            nas_command(spec, "--address", address, "--workers", "2"),
            cwd=REPO,
            env=dict(os.environ),  # carries the session's token settings (tests/conftest.py)
            capture_output=True,
            text=True,
            timeout=500,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in STAGE_FUNCTIONS:
        assert (out / stage / "DONE.json").exists()
    metrics = pd.read_csv(out / "train" / "metrics.csv")
    # one CPU per node and one CPU per worker: the two workers ran on different nodes
    assert metrics["workers"].tolist() == [2, 2]
    directories = exported_paths(out / "export")
    assert directories
    for directory in directories:
        assert (directory / "model.onnx").exists()
        load_exported(directory)
    assert "Pareto front" in done.stdout
