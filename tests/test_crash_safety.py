"""Nothing finished is lost: a second run on a locked directory, a kill, a failed write.

Real processes throughout: the lock holder, the killed fan-out and the size-limited writer are
separate Python processes; the kill is SIGKILL; the failed write is the kernel's EFBIG from
``RLIMIT_FSIZE``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.pipeline.run_dir import LOCK_FILE, RunLock, RunLockedError
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig
from tests.spec_cases import BASE_SPEC, to_toml

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_second_run_on_a_locked_directory_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    holder = _python(
        f"""
        import time
        from pathlib import Path
        from nas.pipeline.run_dir import RunLock
        with RunLock(Path({str(run_dir)!r})):
            print("locked", flush=True)
            time.sleep(600)
        """
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        spec_file = tmp_path / "spec.toml"
        spec_file.write_text(to_toml({**BASE_SPEC, "output_dir": str(run_dir)}))
        assert main(["run", str(spec_file)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert f"PID {holder.pid} on host {socket.gethostname()}" in err[0]
        assert "output_dir" in err[0]
        assert sorted(os.listdir(run_dir)) == [LOCK_FILE]  # the refused run wrote nothing
        with pytest.raises(RunLockedError):
            RunLock(run_dir).__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # a killed holder's lock is released by the system: the next run takes it
    with RunLock(run_dir):
        info = json.loads((run_dir / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_two_nas_runs_on_one_directory(tmp_path: Path) -> None:
    """The second `nas run` exits 2 naming the first; once the first is killed, a rerun works."""
    run_dir = tmp_path / "run"
    spec_file = tmp_path / "spec.toml"
    spec = {**BASE_SPEC, "output_dir": str(run_dir), "train": {"epochs": 30, "batch_size": 32}}
    spec_file.write_text(to_toml(spec))
    command = [sys.executable, "-m", "nas", "train", str(spec_file)]
    env = {**os.environ, "RAY_ADDRESS": "local"}
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: (run_dir / "train" / "INPUTS.json").exists(), 300, "training to start")
        second = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2, second.stderr[-2000:]
        assert len(lines) == 1 and f"PID {first.pid} on host {socket.gethostname()}" in lines[0]
        assert first.poll() is None  # the first run is untouched
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with RunLock(run_dir):  # the killed run's lock went with it
        pass


FANOUT = """
import sys, time
from pathlib import Path
from nas.execution.ray_executor import RayExecutor
from nas.results import ResultStore
from nas.subnet import SubnetConfig
from predictors.dataset import measure_configs

def slow_square(config):
    time.sleep(0.4)
    return {"value": float(config.to_dict()["i"]) ** 2}

configs = [SubnetConfig.from_dict({"i": i}) for i in range(int(sys.argv[2]))]
store = ResultStore(Path(sys.argv[1]))
measure_configs(configs, slow_square, target="any", store=store, executor=RayExecutor(num_cpus=1))
print("finished", flush=True)
"""


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_kill_inside_the_accuracy_fan_out_loses_only_the_evaluations_in_flight(
    tmp_path: Path,
) -> None:
    from predictors.dataset import measure_configs

    path, n = tmp_path / "results.jsonl", 40
    script = tmp_path / "fanout.py"
    script.write_text(FANOUT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(n)],
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") >= 3, 120, "3 records")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = path.read_bytes().split(b"\n")
    complete = [json.loads(line) for line in lines[:-1]]
    assert 3 <= len(complete) < n, "killed too late to test anything"
    for record in complete:  # every finished evaluation is durable and correct
        assert record["metrics"]["value"] == float(record["config"]["i"]) ** 2

    calls: list[int] = []

    def counted(config: SubnetConfig) -> dict[str, float]:
        calls.append(int(config.to_dict()["i"]))
        return {"value": float(config.to_dict()["i"]) ** 2}

    store = ResultStore(path)
    configs = [SubnetConfig.from_dict({"i": i}) for i in range(n)]
    measure_configs(configs, counted, target="any", store=store)
    done_before = {int(r["config"]["i"]) for r in complete}
    assert sorted(calls) == sorted(set(range(n)) - done_before)  # nothing finished is redone
    assert len(ResultStore(path)) == n


WRITER = """
import resource, signal, sys
from pathlib import Path
from nas.errors import StorageError
from nas.results import Evaluation, ResultStore
from nas.subnet import SubnetConfig

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
store = ResultStore(Path(sys.argv[1]))
i = len(store)
try:
    while True:
        store.append(Evaluation(SubnetConfig.from_dict({"i": i}), "any", {"value": i * 1.5}))
        i += 1
except StorageError as exc:
    print(f"{len(store)}|{exc}", flush=True)
    sys.exit(1)
"""


def test_a_failed_append_leaves_the_store_whole_and_resumable(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    store = ResultStore(path)
    store.append(Evaluation(SubnetConfig.from_dict({"i": 0}), "any", {"value": 0.0}))
    limit = 4096
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), str(limit)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    count, message = proc.stdout.strip().split("|", 1)
    assert "\n" not in message and "could not append to" in message and "File too large" in message
    assert path.stat().st_size <= limit
    assert path.read_bytes().endswith(b"\n")  # no torn record left behind
    reloaded = ResultStore(path)
    assert len(reloaded) == int(count) > 1
    # with the limit gone, the same store resumes where it stopped
    reloaded.append(Evaluation(SubnetConfig.from_dict({"i": 10_000}), "any", {"value": 1.0}))
    assert len(ResultStore(path)) == int(count) + 1


def test_two_writers_appending_to_one_store_keep_every_record(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    first, second = ResultStore(path), ResultStore(path)
    for i in range(20):
        store = first if i % 2 else second
        store.append(Evaluation(SubnetConfig.from_dict({"i": i}), "any", {"value": float(i)}))
    assert len(ResultStore(path)) == 20
    assert len(path.read_text().splitlines()) == 20


def _mount_small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_a_full_disk_while_checkpointing_then_a_resume_that_completes(tmp_path: Path) -> None:
    """The disk fills after the first checkpoint: one error line, exit 1; then a rerun finishes."""
    disk = tmp_path / "disk"
    if not _mount_small_tmpfs(disk, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        run_dir = disk / "run"
        spec = {
            **BASE_SPEC,
            "output_dir": str(run_dir),
            "train": {"epochs": 6, "batch_size": 32, "max_failures": 0, "keep_checkpoints": 6},
        }
        spec_file = tmp_path / "spec.toml"
        spec_file.write_text(to_toml(spec))
        command = [sys.executable, "-m", "nas", "train", str(spec_file)]
        env = {**os.environ, "RAY_ADDRESS": "local"}
        first = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        attempt = run_dir / "train" / "ray" / "attempt_000"
        try:
            _wait_for(
                lambda: any(attempt.glob("epoch_*/state.json")) or first.poll() is not None,
                300,
                "a checkpoint",
            )
            filler = disk / "filler"
            with open(filler, "wb") as fh:  # leave the next checkpoint no room
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                os.posix_fallocate(fh.fileno(), 0, max(free - 16 * 1024, 1))
            _, stderr = first.communicate(timeout=300)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert first.returncode == 1, stderr[-3000:]
        assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1], lines[
            -5:
        ]
        assert not (run_dir / "train" / "DONE.json").exists()

        filler.unlink()
        second = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
        done = json.loads((run_dir / "train" / "DONE.json").read_text())
        from nas.pipeline.run_dir import inside_run
        from nas.training.checkpoint import load_checkpoint

        assert load_checkpoint(inside_run(run_dir, done["checkpoint"])).epoch == 6
        attempts = sorted(p.name for p in (run_dir / "train" / "ray").glob("attempt_*"))
        assert attempts == ["attempt_000", "attempt_001"]  # resumed, not restarted
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
