"""A real two-node Ray cluster on 127.0.0.1, started with the ``ray start`` CLI (for tests)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str) -> None:
    cli = Path(sys.executable).with_name("ray")
    done = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(
            f"ray {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


@contextlib.contextmanager
def two_node_cluster(*, cpus_per_node: int = 1) -> Iterator[str]:
    """Start a head and a worker node on 127.0.0.1 and yield the head's GCS address.

    Stops every Ray process on this machine afterwards (``ray stop --force``), so callers must
    not hold another Ray instance open.
    """
    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env_cpus = str(cpus_per_node)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # as tests/conftest.py sets for the session
    try:
        _ray(
            "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={env_cpus}", "--include-dashboard=false", "--disable-usage-stats",
        )  # fmt: skip
        _ray(
            "start", f"--address={address}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={env_cpus}", "--disable-usage-stats",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        ray.init(address=address, include_dashboard=False)
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker node did not join the head")
            time.sleep(0.5)
        ray.shutdown()
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _ray("stop", "--force")
