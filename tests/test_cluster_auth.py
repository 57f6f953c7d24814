"""Clusters with token authentication: `nas run --address` on two nodes, `nas submit` via Jobs.

Each test gives the head, the worker and the driver (or submitter) homes of their own, as
separate machines have, and shares the head's token the ways the README describes: the
``RAY_AUTH_TOKEN`` variable on the worker, a copy of ``~/.ray/auth_token`` on the driver.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nas.errors import ConfigError
from nas.execution.ray_auth import check_cluster_access, is_cluster_address
from nas.execution.ray_jobs import submit_experiment
from nas.pipeline import STAGE_FUNCTIONS
from tests.ray_cluster import REPO, free_port, machine_env, ray_cli, ray_cluster
from tests.spec_cases import BASE_SPEC, to_toml

pytestmark = pytest.mark.ray


def _head_with_token(home: Path) -> tuple[dict[str, str], str]:
    """The head machine's environment after `ray get-auth-token --generate`, and its token."""
    env = machine_env(home, RAY_AUTH_MODE="token")
    ray_cli("get-auth-token", "--generate", env=env)
    return env, (home / ".ray" / "auth_token").read_text().strip()


def _nas(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nas", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip


def _one_error_line(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), done.stderr[-3000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def test_only_host_port_addresses_are_probed() -> None:
    assert is_cluster_address("10.0.0.5:6379")
    for address in (None, "", "local", "auto", "ray://head:10001"):
        assert not is_cluster_address(address)


def test_an_address_where_nothing_listens_is_one_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=r"ray.address='127.0.0.1:\d+': no Ray head answers"):
        check_cluster_access(address)


def test_submit_refuses_before_uploading(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    spec = tmp_path / "spec.toml"  # outside the working directory the job receives
    spec.write_text(to_toml({**BASE_SPEC, "output_dir": "runs/x"}))
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match="outside --working-dir"):
        submit_experiment(nowhere, spec, output_dir=tmp_path / "out", working_dir=work)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("earlier run")
    with pytest.raises(ConfigError, match="already holds files"):
        submit_experiment(nowhere, spec, output_dir=tmp_path / "out", working_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_nas_run_on_a_two_node_cluster_with_token_authentication(tmp_path: Path) -> None:
    head, token = _head_with_token(tmp_path / "head")
    worker = machine_env(tmp_path / "worker", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    driver_home = tmp_path / "driver"
    out = tmp_path / "run"
    spec = tmp_path / "spec.toml"
    spec.write_text(to_toml({**BASE_SPEC, "output_dir": str(out)}))
    with ray_cluster(nodes=2, cpus_per_node=1, head_env=head, worker_env=worker) as cluster:
        started = time.monotonic()
        no_token = _nas(
            "run", str(spec), "--address", cluster.address, env=machine_env(driver_home)
        )
        no_token_s = time.monotonic() - started
        wrong = machine_env(driver_home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
        wrong_token = _nas("run", str(spec), "--address", cluster.address, env=wrong)
        (driver_home / ".ray").mkdir()
        (driver_home / ".ray" / "auth_token").write_text(token)  # the head's token, copied
        driver = machine_env(driver_home, RAY_AUTH_MODE="token")
        done = _nas("run", str(spec), "--address", cluster.address, "--workers", "2", env=driver)

    _one_error_line(no_token, "requires token authentication", "RAY_AUTH_MODE=token")
    assert "InvalidAuthToken" not in no_token.stderr + no_token.stdout
    assert no_token_s < 60, f"{no_token_s:.0f} s: Ray's connection retries were not cut short"
    _one_error_line(wrong_token, "rejected this machine's token (from RAY_AUTH_TOKEN)")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in STAGE_FUNCTIONS:
        assert (out / stage / "DONE.json").exists()
    # one CPU per node and one CPU per Ray Train worker: the two workers ran on different nodes
    assert set(pd.read_csv(out / "train" / "metrics.csv")["workers"]) == {2}
    assert "Pareto front" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_nas_submit_streams_the_job_and_brings_its_outputs_back(tmp_path: Path) -> None:
    head, token = _head_with_token(tmp_path / "head")
    project = tmp_path / "project"
    project.mkdir()
    (project / "spec.toml").write_text(to_toml({**BASE_SPEC, "output_dir": "runs/fuzz"}))
    user_home = tmp_path / "user"
    with ray_cluster(nodes=1, cpus_per_node=2, dashboard=True, head_env=head) as cluster:
        assert cluster.dashboard is not None
        submit = ["submit", "spec.toml", "--address", cluster.dashboard]
        refused = _nas(*submit, env=machine_env(user_home), cwd=project)
        user = machine_env(user_home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas", *submit],
            cwd=project, env=user, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        arrivals = [(time.monotonic(), line) for line in proc.stdout]
        stderr = proc.stderr.read() if proc.stderr else ""
        rc = proc.wait(timeout=60)

    _one_error_line(refused, "requires token authentication", "RAY_AUTH_MODE=token")
    stdout = "".join(line for _, line in arrivals)
    assert rc == 0, stdout[-3000:] + stderr[-3000:]
    out = project / "runs" / "fuzz"  # the spec's output_dir, where `nas submit` ran
    assert f"outputs: {out}\n" in stdout
    for stage in STAGE_FUNCTIONS:
        assert (out / stage / "DONE.json").exists()
    assert list((out / "export").glob("*/model.onnx"))
    # the job's log arrived while the job ran, not in one piece at its end
    trained = next(t for t, line in arrivals if line.startswith("[train] running"))
    ended = next(t for t, line in arrivals if "SUCCEEDED" in line)
    assert ended - trained > 10, f"log lines came {ended - trained:.1f} s before the end"
    status = _nas("status", str(out), env=user)
    assert status.returncode == 0 and "export      done" in status.stdout, status.stdout


_LOCAL_RUN = (
    "from nas.execution.placement import ensure_ray\n"
    "ensure_ray(None)\n"
    "import ray\n"
    "assert ray.get(ray.remote(lambda: 1).remote()) == 1\n"
)


def test_a_local_instance_keeps_token_auth_without_rays_warning(tmp_path: Path) -> None:
    """A fresh home: one line says where Ray writes the token; Ray's own warning is gone."""
    home = tmp_path / "home"
    lines = []
    for _ in range(2):  # the second run finds the token and says nothing about it
        done = subprocess.run(
            [sys.executable, "-c", _LOCAL_RUN],
            env=machine_env(home), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Token authentication is enabled" not in done.stderr, done.stderr[-3000:]
        lines.append([line for line in done.stderr.splitlines() if "token" in line.lower()])
    token = home / ".ray" / "auth_token"
    assert token.is_file() and token.read_text().strip()
    assert len(lines[0]) == 1 and str(token) in lines[0][0], lines[0]
    assert lines[1] == [], lines[1]
