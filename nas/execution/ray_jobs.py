"""Run an experiment on a Ray cluster as a Ray job (the Jobs API) and bring its outputs back.

The Jobs API uploads a working directory but has no call that downloads what a job wrote: a
job's files live in its working directory inside the head's Ray session directory and go away
with the cluster. So the job ends by packing its run directory into one archive in its node's
Ray log directory, and the submitter fetches that file from the dashboard's log-file endpoint
(``/api/v0/logs/file``: raw bytes, same port and token as the Jobs API) and unpacks it into its
own ``output_dir``. Nothing needs storage shared by the submitter and the cluster.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shlex
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import ray
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient

from nas.artifacts.safe_archive import DEFAULT_LIMITS, ArchiveError, unpack_archive
from nas.errors import ConfigError
from nas.execution.ray_auth import GIVE_TOKEN, TOKEN_HELP, token_source

JOB_RUN_DIR = ".nas_job/run"  # the run directory, inside the job's working directory
ARCHIVE_FOLDER = "nas_jobs"  # under the Ray log directory of the job's driver node
_DASHBOARD_HELP = (
    "start the head with `ray start --head --include-dashboard=true`, which needs "
    "`pip install -e '.[cluster]'` (ray[default]) there"
)


@dataclass(frozen=True)
class SubmittedJob:
    """What ``nas submit`` reports: the job, how it ended, where its run directory now is."""

    job_id: str
    status: str
    message: str | None = None
    outputs: Path | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCEEDED.value


def submit_experiment(
    address: str,
    spec_path: str | Path,
    *,
    output_dir: str | Path,
    working_dir: str | Path = ".",
    wait: bool = True,
    log: TextIO | None = None,
) -> SubmittedJob:
    """Submit ``nas run SPEC`` as a job; when waiting, stream its logs and fetch its outputs.

    Args:
        address: The head's dashboard, ``http://HEAD:8265``.
        spec_path: The spec; it must lie inside ``working_dir``, which the job receives.
        output_dir: Where the job's run directory is unpacked here; it must be absent or empty.
        working_dir: Uploaded as the job's working directory (Ray honours its ``.gitignore``).
        wait: Wait for the job (streaming its logs to ``log``) and fetch its outputs.
        log: Where job logs go (default: stdout).
    """
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"output_dir={str(out)!r} already holds files; a submitted run brings back a new run "
            "directory: pass another --output-dir or remove it"
        )
    if wait and importlib.util.find_spec("aiohttp") is None:
        raise ConfigError(
            "nas submit streams job logs with ray[default]: `pip install -e '.[cluster]'`"
        )
    spec = _inside(Path(spec_path), Path(working_dir))
    job_id = f"nas_{uuid.uuid4().hex[:12]}"
    with _jobs_api_errors(address):
        client = JobSubmissionClient(address)
        client.submit_job(
            entrypoint=job_entrypoint(spec, job_id),
            runtime_env={"working_dir": str(working_dir)},
            submission_id=job_id,
        )
        if not wait:
            return SubmittedJob(job_id, client.get_job_status(job_id).value)
        _stream_logs(client, job_id, log or sys.stdout)
        info = client.get_job_info(job_id)
        while not info.status.is_terminal():  # the log stream may close a moment earlier
            time.sleep(0.5)
            info = client.get_job_info(job_id)
        outputs = _fetch_run(client, job_id, info.driver_node_id, out)
    return SubmittedJob(job_id, info.status.value, info.message, outputs)


def job_entrypoint(spec: str, job_id: str) -> str:
    """The job's shell command: run the spec, then pack the run directory whatever the result."""
    pack = f"from nas.execution.ray_jobs import pack_run; pack_run({JOB_RUN_DIR!r}, {job_id!r})"
    run = f"python -m nas run {shlex.quote(spec)} --address auto --output-dir {JOB_RUN_DIR}"
    return f"{run}; status=$?; python -c {shlex.quote(pack)} || exit 1; exit $status"


def pack_run(run_dir: str | Path, job_id: str) -> Path | None:
    """In the job: archive ``run_dir`` as ``<Ray log dir>/nas_jobs/<job_id>.tar.gz``.

    Returns the archive, or ``None`` when the run wrote no directory (it failed before that).
    """
    run = Path(run_dir)
    if not run.is_dir():
        print(f"nas submit: no run directory {run} to bring back", flush=True)
        return None
    ray.init(address="auto", log_to_driver=False)  # the job's own cluster, to find its log dir
    try:
        # No public API names the node's log directory; Ray's job supervisor reads it the same way.
        # (_global_node is declared None at import time; ray.init above set it)
        node = ray._private.worker._global_node
        assert node is not None
        logs = Path(node.get_logs_dir_path())
    finally:
        ray.shutdown()
    target = logs / ARCHIVE_FOLDER / f"{job_id}.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        archive.add(run, arcname="run")
    os.replace(partial, target)  # the submitter never fetches half an archive
    print(
        f"nas submit: packed {run} ({target.stat().st_size} bytes) for the submitter", flush=True
    )
    return target


def _inside(spec: Path, working_dir: Path) -> str:
    """``spec`` relative to ``working_dir``: the path the job, started there, opens."""
    try:
        return spec.resolve().relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            f"spec {str(spec)!r} is outside --working-dir={str(working_dir)!r}, which is all the "
            "job receives: move the spec there or pass a --working-dir that contains it"
        ) from None


@contextmanager
def _jobs_api_errors(address: str) -> Iterator[None]:
    """Authentication and connection failures of the Jobs API as one ConfigError line."""
    import requests

    try:
        yield
    except AuthenticationError as exc:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        if is_token_auth_enabled():
            raise ConfigError(
                f"--address={address!r}: the cluster rejected this machine's token (from "
                f"{token_source()}); {GIVE_TOKEN}"
            ) from exc
        raise ConfigError(
            f"--address={address!r}: the cluster requires token authentication; {TOKEN_HELP}"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise ConfigError(
            f"--address={address!r}: no Ray dashboard answers there; {_DASHBOARD_HELP}"
        ) from exc


def _stream_logs(client: JobSubmissionClient, job_id: str, log: TextIO) -> None:
    """Print the job's logs as they are written, until the job ends."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            log.write(chunk)
            log.flush()

    asyncio.run(tail())


def _fetch_run(
    client: JobSubmissionClient, job_id: str, node_id: str | None, output_dir: Path
) -> Path | None:
    """Download the job's archive and unpack its run directory as ``output_dir``."""
    if node_id is None:  # the job ended before its driver started: nothing was written
        return None
    response = client._do_request(  # the client's session: address, token header, TLS settings
        "GET",
        "/api/v0/logs/file",
        params={
            "node_id": node_id,
            "filename": f"{ARCHIVE_FOLDER}/{job_id}.tar.gz",
            "lines": -1,  # the whole file, not its last 1000 lines
            "timeout": 600,
        },
        stream=True,
    )
    if response.status_code != 200:  # the job packed nothing (see its log)
        return None
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=".nas_submit_") as tmp:
        archive = Path(tmp) / f"{job_id}.tar.gz"
        received = 0
        with open(archive, "wb") as f:
            for chunk in response.iter_content(chunk_size=1 << 20):
                received += len(chunk)
                if received > DEFAULT_LIMITS.max_total_bytes:  # gzip adds next to nothing
                    raise ArchiveError(
                        f"{ARCHIVE_FOLDER}/{job_id}.tar.gz: refused: the download is over "
                        f"{DEFAULT_LIMITS.max_total_bytes >> 20} MiB"
                    )
                f.write(chunk)
        # Every member checked by us, never by tarfile's filters; all or nothing into output_dir.
        label = f"the job's archive {ARCHIVE_FOLDER}/{job_id}.tar.gz"
        return unpack_archive(archive, output_dir, top="run", label=label)


__all__ = ["SubmittedJob", "job_entrypoint", "pack_run", "submit_experiment"]
