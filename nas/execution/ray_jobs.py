"""Launch an experiment on a remote Ray cluster as a Ray job (the Jobs API, not SSH)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient


def submit_experiment(
    address: str, spec_path: str, *, working_dir: str = ".", wait: bool = False
) -> str:
    """Submit ``nas run SPEC`` with ``working_dir`` uploaded; return the job id.

    The job runs on the cluster's head and reaches the workers through ``ray.init("auto")``,
    so the spec's ``ray.address`` should be empty (or ``"auto"``) for submitted runs.
    """
    client = JobSubmissionClient(address)
    spec = Path(spec_path)
    entrypoint = f"python -m nas run {shlex.quote(str(spec))} --address auto"
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": working_dir})
    if wait:
        terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
        while client.get_job_status(job_id) not in terminal:
            time.sleep(2)
        print(client.get_job_logs(job_id))
    return job_id
