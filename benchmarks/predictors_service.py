"""Predictor service over HTTP and Python batch throughput, next to in-process baselines.

A bundle is trained on real data, saved, and served by ``predictors.apps.commands.serve`` (the code
behind ``nas serve``: uvicorn + the FastAPI app of ``predictors.apps.service``) in a *separate
process*
on 127.0.0.1; an ``httpx`` client in this process sends the requests over a keep-alive
connection. Bundles (``--bundle``):

- ``nb201`` (default): NAS-Bench-201, seven predictors fitted on 100 random architectures:
  ``top1`` (CIFAR-10, kind ``ensemble``) and ``latency_ms@<device>`` for the six devices (kind
  ``ridge``), i.e. what ``benchmarks.predictors_nb201`` recommends;
- ``ofa``: OFA MobileNetV3 (``mobilenet_like``, 70 dimensions per config), ``top1`` (kind
  ``ensemble``, one-hot) and ``macs`` (kind ``ridge``) fitted on 200 configs.

Measured, all in one run:

1. ``/predict`` latency, one request at a time, for 1 and 100 configs per request (p50, p99), next
   to ``GET /health`` (the HTTP floor: no prediction) and, in-process on the same configs,
   ``Predictors.predict`` (the work without HTTP) and the stock path (encode, then each
   predictor's scikit-learn ``Pipeline.predict``);
2. a bounded load test at each of ``--concurrency`` (default 1 and 8 client threads, each with
   its own keep-alive connection): ``--load-requests`` requests of 1..100 configs, p50/p99
   latency and the error count; an error is an exception, a status other than 200, a wrong
   number of predictions or a prediction that differs from the in-process one;
3. bad input (malformed JSON, unknown keys, out-of-space values, wrong types, unknown metric, an
   oversized batch): each must answer 422 with the key in ``detail[0].loc``, and a valid request
   right after it must answer 200;
4. Python batch throughput of ``Predictors.predict`` on 10,000 configs (plain dicts, as decoded
   from JSON), against the stock path on the same batch and one config per call.

Run: ``python -m benchmarks.predictors_service`` (``--bundle ofa`` for the other bundle;
``--threads 1`` pins OpenBLAS/OpenMP threads of server and client to 1).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from threadpoolctl import threadpool_limits

import search_spaces
from benchmarks.data import NB201_DEVICES, load_nb201, load_ofa_mbv3
from predictors.bundle import Predictors
from predictors.models import make_predictor
from predictors.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# -- bundles ------------------------------------------------------------------------------------
def nb201_bundle(n_train: int = 100, seed: int = 0) -> tuple[Predictors, list[dict[str, Any]]]:
    frame, configs = load_nb201()
    space = search_spaces.get("nas_bench_201")
    X = space.encode_many(configs)
    train = np.random.default_rng(seed).permutation(len(X))[:n_train]

    def fitted(column: str, kind: str, metric: str, target: str | None) -> Predictor:
        y = frame[column].to_numpy(dtype=float)[train]
        pipe = make_predictor(space, kind=kind, random_state=seed).fit(X[train], y)
        return Predictor(space, pipe, metric=metric, target=target, kind=kind)

    predictors = [fitted("cifar10_test_acc", "ensemble", "top1", None)]
    predictors += [fitted(f"lat_{d}", "ridge", "latency_ms", d) for d in NB201_DEVICES]
    return Predictors(predictors), [c.to_dict() for c in configs]


def ofa_bundle(n_train: int = 200, seed: int = 0) -> tuple[Predictors, list[dict[str, Any]]]:
    frame, configs = load_ofa_mbv3()
    space = search_spaces.get("mobilenet_like", bits=(32,))
    X = space.encode_many(configs)
    train = np.random.default_rng(seed).permutation(len(X))[:n_train]
    predictors = []
    for column, kind in (("top1", "ensemble"), ("macs", "ridge")):
        y = frame[column].to_numpy(dtype=float)[train]
        pipe = make_predictor(space, kind=kind, encoding="onehot", random_state=seed)
        predictors.append(Predictor(space, pipe.fit(X[train], y), metric=column, kind=kind))
    return Predictors(predictors), [space.canonical(c).to_dict() for c in configs]


BUNDLES = {"nb201": nb201_bundle, "ofa": ofa_bundle}


# -- server -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundle_dir: Path, port: int) -> subprocess.Popen[bytes]:
    code = (
        "from predictors.apps.commands import serve; "
        f"serve({str(bundle_dir)!r}, host='127.0.0.1', port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not answer /health within 60 s")


# -- measurements -------------------------------------------------------------------------------
def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = 1e3 * np.asarray(seconds)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_calls(fn, args: list[Any], warmup: int = 20) -> list[float]:  # type: ignore[no-untyped-def]
    for a in args[:warmup]:
        fn(a)
    out = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - t0)
    return out


def batches(configs: list[dict[str, Any]], size: int, count: int, seed: int) -> list[list[Any]]:
    rng = np.random.default_rng(seed)
    return [[configs[i] for i in rng.integers(0, len(configs), size)] for _ in range(count)]


def latency_table(
    client: httpx.Client, bundle: Predictors, configs: list[dict[str, Any]], repeats: int
) -> list[tuple[str, int, int, float, float]]:
    rows = []
    health = time_calls(lambda _: client.get("/health").raise_for_status(), [None] * repeats)
    rows.append(("GET /health (HTTP floor)", 0, repeats, *percentiles(health)))
    for size, count in ((1, repeats), (100, max(50, repeats // 5))):
        reqs = batches(configs, size, count, seed=size)

        def post(batch: list[Any]) -> None:
            r = client.post("/predict", json={"configs": batch})
            r.raise_for_status()

        rows.append(("POST /predict", size, count, *percentiles(time_calls(post, reqs))))
        inproc = time_calls(bundle.predict, reqs)
        rows.append(("Predictors.predict in-process", size, count, *percentiles(inproc)))
        stock = time_calls(lambda batch: stock_predict(bundle, batch), reqs)
        rows.append(("stock Pipeline.predict in-proc", size, count, *percentiles(stock)))
    return rows


def stock_predict(bundle: Predictors, configs: list[Any]) -> list[np.ndarray]:
    """The baseline: encode once, then every predictor's scikit-learn ``Pipeline.predict``."""
    X = bundle[bundle.names[0]].encode(configs)
    return [bundle[name].pipeline.predict(X) for name in bundle.names]


def load_test(
    url: str,
    bundle: Predictors,
    configs: list[dict[str, Any]],
    n_requests: int,
    concurrency: int,
    check: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 101, n_requests)
    reqs = [[configs[i] for i in rng.integers(0, len(configs), s)] for s in sizes]
    expected = {i: bundle.predict(reqs[i]) for i in range(0, n_requests, n_requests // check)}
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(n_requests))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = client.post("/predict", json={"configs": reqs[i]})
                    problem = None
                    if r.status_code != 200:
                        problem = f"status {r.status_code}"
                    else:
                        got = r.json()["predictions"]
                        if len(got) != len(reqs[i]):
                            problem = f"{len(got)} predictions for {len(reqs[i])} configs"
                        elif i in expected and not all(
                            np.allclose(list(g.values()), list(e.values()), rtol=1e-9)
                            for g, e in zip(got, expected[i], strict=True)
                        ):
                            problem = "predictions differ from Predictors.predict"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if problem is not None:
                        errors.append(f"request {i}: {problem}")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {
        "requests": n_requests,
        "configs": int(sizes.sum()),
        "concurrency": concurrency,
        "errors": len(errors),
        "first_errors": errors[:5],
        "checked_against_python": len(expected),
        "wall_s": wall,
        "req_per_s": n_requests / wall,
        "configs_per_s": float(sizes.sum()) / wall,
        "p50_ms": p50,
        "p99_ms": p99,
    }


def bad_input_cases(bundle: Predictors, config: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(case, request body: bytes or JSON object, key that ``detail[0].loc`` must contain)."""
    dim = bundle.space.dims[0]
    name = dim.name
    bad_value: Any = "no_such_option" if isinstance(dim.options[0], str) else 999
    missing = {k: v for k, v in config.items() if k != name}
    return [
        ("malformed JSON (truncated)", b'{"configs": [', "body"),
        ("not JSON", b"configs=1", "body"),
        ("unknown top-level key", {"configs": [config], "confgs": []}, "confgs"),
        ("unknown config key", {"configs": [{**config, "no_such_dim": 1}]}, "no_such_dim"),
        ("missing config key", {"configs": [missing]}, name),
        ("out-of-space value", {"configs": [config, {**config, name: bad_value}]}, name),
        ("wrong type (list)", {"configs": [{**config, name: [1]}]}, name),
        ("wrong type (bool)", {"configs": [{**config, name: True}]}, name),
        ("unknown metric", {"configs": [config], "metrics": ["top5"]}, "metrics"),
        ("empty batch", {"configs": []}, "configs"),
        ("batch over the limit", {"configs": [config] * 10_001}, "configs"),
    ]


def bad_input(client: httpx.Client, bundle: Predictors, config: dict[str, Any]) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for case, body, key in bad_input_cases(bundle, config):
        if isinstance(body, bytes):
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
        else:
            r = client.post("/predict", json=body)
        try:
            detail = r.json()["detail"][0]
            loc, msg = detail["loc"], detail["msg"]
        except (ValueError, KeyError, IndexError, TypeError):
            loc, msg = None, r.text[:80]
        after = client.post("/predict", json={"configs": [config]}).status_code
        ok = r.status_code == 422 and loc is not None and key in loc and after == 200
        row = {"case": case, "status": r.status_code, "loc": loc, "msg": msg}
        rows.append({**row, "next": after, "ok": ok})
    return rows


def throughput(
    bundle: Predictors, configs: list[dict[str, Any]], n_batch: int, n_single: int
) -> dict[str, float]:
    big = batches(configs, n_batch, 1, seed=11)[0]
    bundle.predict(big[:100])
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        bundle.predict(big)
        runs.append(time.perf_counter() - t0)
    batch_rate = n_batch / float(np.median(runs))
    stock_runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        stock_predict(bundle, big)
        stock_runs.append(time.perf_counter() - t0)
    stock_rate = n_batch / float(np.median(stock_runs))
    singles = big[:n_single]
    t0 = time.perf_counter()
    for c in singles:
        bundle.predict([c])
    single_rate = n_single / (time.perf_counter() - t0)
    return {
        "batch": batch_rate,
        "stock_batch": stock_rate,
        "single": single_rate,
        "ratio": batch_rate / single_rate,
    }


# -- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", choices=sorted(BUNDLES), default="nb201")
    parser.add_argument("--repeats", type=int, default=1000, help="requests of 1 config")
    parser.add_argument("--load-requests", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8], help="client threads, one run each"
    )
    parser.add_argument("--throughput-batch", type=int, default=10_000)
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS/OpenMP threads of server and client (default: the libraries' own choice)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.threads is not None:
        for var in THREAD_VARS:  # inherited by the server process
            os.environ[var] = str(args.threads)
        threadpool_limits(args.threads)

    bundle, configs = BUNDLES[args.bundle]()
    threads = args.threads if args.threads is not None else "library default"
    print(
        f"bundle {args.bundle}: space {bundle.space.name} ({len(bundle.space.dims)} dims), "
        f"predictors {list(bundle.names)}; {os.cpu_count()} CPUs shared by server and client; "
        f"BLAS threads: {threads}"
    )
    results: dict[str, Any] = {"bundle": args.bundle, "predictors": list(bundle.names)}
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(Path(tmp) / "bundle")
        port = free_port()
        server = start_server(Path(tmp) / "bundle", port)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                rows = latency_table(client, bundle, configs, args.repeats)
                print(f"\n1. latency, one request at a time (keep-alive), {url}")
                head = f"{'what':<32}{'configs':>8}{'requests':>9}{'p50_ms':>9}{'p99_ms':>9}"
                print(head + "\n" + "-" * len(head))
                for what, size, count, p50, p99 in rows:
                    print(f"{what:<32}{size:>8}{count:>9}{p50:>9.2f}{p99:>9.2f}")
                for size in (1, 100):
                    http = next(r for r in rows if r[0] == "POST /predict" and r[1] == size)
                    py = next(r for r in rows if r[0].startswith("Predictors") and r[1] == size)
                    print(f"HTTP / in-process p50 at {size} config(s): {http[3] / py[3]:.2f}")
                results["latency"] = [
                    dict(zip(("what", "configs", "requests", "p50_ms", "p99_ms"), r, strict=True))
                    for r in rows
                ]

                loads = [
                    load_test(url, bundle, configs, args.load_requests, c, check=100)
                    for c in args.concurrency
                ]
                print(
                    f"\n2. load test: {args.load_requests} requests of 1-100 configs per run "
                    f"({loads[0]['configs']} configs; {loads[0]['checked_against_python']} "
                    "responses compared with Predictors.predict)"
                )
                head = (
                    f"{'concurrency':>11}{'requests':>9}{'errors':>7}{'wall_s':>8}"
                    f"{'req/s':>7}{'configs/s':>10}{'p50_ms':>8}{'p99_ms':>8}"
                )
                print(head + "\n" + "-" * len(head))
                for load in loads:
                    print(
                        f"{load['concurrency']:>11}{load['requests']:>9}{load['errors']:>7}"
                        f"{load['wall_s']:>8.1f}{load['req_per_s']:>7.0f}"
                        f"{load['configs_per_s']:>10.0f}{load['p50_ms']:>8.1f}{load['p99_ms']:>8.1f}"
                    )
                    for e in load["first_errors"]:
                        print("  ", e)
                results["load"] = loads

                checks = bad_input(client, bundle, configs[0])
                print("\n3. bad input (then one valid request)")
                head = f"{'case':<28}{'status':>7}  {'loc':<42}{'next':>5}{'ok':>4}"
                print(head + "\n" + "-" * len(head))
                for c in checks:
                    loc = json.dumps(c["loc"])[:40]
                    print(
                        f"{c['case']:<28}{c['status']:>7}  {loc:<42}{c['next']:>5}"
                        f"{'yes' if c['ok'] else 'NO':>4}"
                    )
                alive = server.poll() is None and client.get("/health").status_code == 200
                print(f"server still serving after all of the above: {alive}")
                results["bad_input"] = checks
                results["alive"] = alive
        finally:
            server.terminate()
            server.wait(timeout=30)

    tp = throughput(bundle, configs, args.throughput_batch, n_single=300)
    print(
        f"\n4. Python throughput of Predictors.predict ({len(bundle)} predictors, dict configs): "
        f"batch of {args.throughput_batch}: {tp['batch']:.0f} configs/s (stock Pipeline.predict: "
        f"{tp['stock_batch']:.0f} configs/s); one config per call: {tp['single']:.0f} configs/s; "
        f"batch / one-per-call = {tp['ratio']:.0f}"
    )
    results["throughput"] = tp
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
