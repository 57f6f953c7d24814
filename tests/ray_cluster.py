"""Real Ray clusters on 127.0.0.1, started with the ``ray start`` CLI (for tests).

They use token authentication, as Ray clusters should: every ``ray start`` runs with
``RAY_AUTH_MODE=token`` and the token of the environment it is given (by default the test
session's, see ``tests/conftest.py``). Each node can get its own environment, so a test can give
the head, a worker and a driver separate homes and tokens, as separate machines would have.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
RAY_CLI = str(Path(sys.executable).with_name("ray"))
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class Cluster:
    address: str  # the head's GCS: `ray start --address`, `nas run --address`
    dashboard: str | None  # the Jobs API, `nas submit --address`, when started with one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_env(home: Path, **auth: str) -> dict[str, str]:
    """The environment of another machine: its own home (~/.ray/auth_token) and auth settings.

    ``nas`` is importable from the repository (``PYTHONPATH``), as if installed there.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES}
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), **auth}


def ray_cli(*args: str, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run([RAY_CLI, *args], capture_output=True, text=True, timeout=180, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"ray {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


_WAIT_FOR_NODES = textwrap.dedent(
    """
    import sys, time
    import ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    deadline = time.monotonic() + 60
    while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
        if time.monotonic() > deadline:
            sys.exit("the worker nodes did not join the head")
        time.sleep(0.5)
    """
)


@contextlib.contextmanager
def ray_cluster(
    *,
    nodes: int = 2,
    cpus_per_node: int = 1,
    dashboard: bool = False,
    head_env: Mapping[str, str] | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start a head and ``nodes - 1`` worker nodes on 127.0.0.1; yield their addresses.

    Every port is a free one (several clusters may run on a shared machine). Stops every Ray
    process on this machine afterwards (``ray stop``, then ``ray stop --force`` for stragglers),
    so callers must not hold another Ray instance open.
    """
    if ray.is_initialized():
        ray.shutdown()
    head_env = {**(head_env or os.environ), "RAY_AUTH_MODE": "token"}
    worker_env = {**(worker_env or head_env), "RAY_AUTH_MODE": "token"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    dashboard_port = free_port()

    def node_args() -> list[str]:  # each node's agent needs a port of its own
        return [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus_per_node}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
        ]

    try:
        ray_cli(
            "start", "--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
            f"--include-dashboard={str(dashboard).lower()}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", *node_args(), env=head_env,
        )  # fmt: skip
        for _ in range(nodes - 1):
            ray_cli("start", f"--address={address}", *node_args(), env=worker_env)
        done = subprocess.run(
            [sys.executable, "-c", _WAIT_FOR_NODES, address, str(nodes)],
            env=head_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"cluster at {address} not ready:\n{done.stderr[-2000:]}")
        yield Cluster(address, f"http://127.0.0.1:{dashboard_port}" if dashboard else None)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            ray_cli("stop", env=head_env)
        ray_cli("stop", "--force", env=head_env)


@contextlib.contextmanager
def two_node_cluster(*, cpus_per_node: int = 1) -> Iterator[str]:
    """A head and a worker node with the session's token; yield the head's GCS address."""
    with ray_cluster(nodes=2, cpus_per_node=cpus_per_node) as cluster:
        yield cluster.address
