"""optuna-dashboard opens a search's journal: its API, then the page in headless Chromium.

A real search (pymoo-nsga2 on the analytic problem) records into a journal; the
``optuna-dashboard`` command serves it on a free loopback port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from matplotlib.image import imread

from nas.results import ResultStore
from nas.search import make_searcher, run_search
from nas.search.optuna_record import JOURNAL_FILE, OptunaRecord
from tests.test_search_problems import analytic_problem, evaluator

STUDY = "dashboard-demo"
BUDGET = 60
DASHBOARD = shutil.which("optuna-dashboard")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell")

pytestmark = pytest.mark.skipif(
    DASHBOARD is None, reason="optuna-dashboard is not installed (pip install -e '.[dashboard]')"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of optuna-dashboard serving the journal of a finished search."""
    journal = tmp_path_factory.mktemp("search") / JOURNAL_FILE
    problem = analytic_problem(constrained=True)
    record = OptunaRecord(journal, problem, study_name=STUDY, source="predicted")
    run_search(
        make_searcher("pymoo-nsga2", problem, seed=0),
        evaluator(),
        ResultStore(),
        budget=BUDGET,
        on_evaluated=record.add,
    )
    port = _free_port()
    assert DASHBOARD is not None
    proc = subprocess.Popen(
        [DASHBOARD, str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                httpx.get(f"{url}/api/meta", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "optuna-dashboard did not start in 30 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.timeout(60)
def test_api_lists_the_study_with_its_trials_and_directions(dashboard: str) -> None:
    (study,) = httpx.get(f"{dashboard}/api/studies", timeout=10).json()["study_summaries"]
    assert study["study_name"] == STUDY
    assert study["directions"] == ["maximize", "minimize"]
    detail = httpx.get(f"{dashboard}/api/studies/{study['study_id']}", timeout=10).json()
    assert detail["objective_names"] == ["quality", "cost_ms@toy"]
    assert len(detail["trials"]) == BUDGET
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert all(len(t["constraints"]) == 1 for t in detail["trials"])
    assert 0 < len(detail["best_trials"]) < BUDGET  # the Pareto front
    attrs = {a["key"]: a["value"] for a in detail["trials"][0]["user_attrs"]}
    assert attrs["source"] == "predicted" and len(attrs["config_key"]) == 16


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium-headless-shell)"
)
def test_the_study_page_renders_in_headless_chromium(dashboard: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = f"{dashboard}/dashboard/studies/0"
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=8000",
    ]
    shot = tmp_path / "dashboard.png"
    subprocess.run(
        [*browser, "--window-size=1280,900", f"--screenshot={shot}", page],
        check=True,
        capture_output=True,
        timeout=40,
    )
    image = imread(shot)
    assert image.shape[:2] == (900, 1280)
    assert float(np.std(image[..., :3])) > 0.05  # not a blank page
    dom = subprocess.run(
        [*browser, "--dump-dom", page], check=True, capture_output=True, text=True, timeout=40
    ).stdout
    assert STUDY in dom and "Pareto Front" in dom
