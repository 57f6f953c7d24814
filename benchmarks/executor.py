"""Accuracy evaluation fanned out over Ray workers vs the sequential LocalExecutor.

Run: ``python -m benchmarks.executor`` (from the repository root; about a minute on 2 cores).

Each item exports one ``mobilenet_like`` subnet (1 input channel, 10 classes, 32×32) and computes
its top-1 on the bundled digits validation split (upsampled to 32×32). Reported: wall time of
``LocalExecutor`` (torch pinned to 1 thread, as each Ray worker is, and with 2 threads), of
``RayExecutor(num_cpus=1)`` on a 2-CPU local Ray instance (started and warmed up before
timing), the speed-up, and whether Ray's results equal the local ones.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
import torch.nn.functional as F

import search_spaces
from nas.data.datasets import ImageData, load_digits_data
from nas.execution import LocalExecutor
from nas.execution.placement import local_ray
from nas.execution.ray_executor import RayExecutor
from nas.subnet import SubnetConfig
from nas.supernets.base import Supernet


def top1(
    supernet: Supernet, data: ImageData, threads: int, config: SubnetConfig
) -> tuple[str, float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, y = data.tensors("val")
        x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
        with torch.inference_mode():
            pred = supernet.export(config).eval()(x).argmax(dim=1)
        return config.key, float((pred == y).float().mean())
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    space = search_spaces.get("mobilenet_like", in_channels=1, num_classes=10, resolution=32)
    net = Supernet(space).eval()
    data = load_digits_data(seed=args.seed)
    configs = space.sample_many(args.n, np.random.default_rng(args.seed))

    rows = []
    for threads in (1, 2):
        fn = functools.partial(top1, net, data, threads)
        t0 = time.perf_counter()
        local = LocalExecutor().map(fn, configs)
        rows.append((f"LocalExecutor, torch {threads} thread(s)", time.perf_counter() - t0))
        if threads == 1:
            reference = local

    with local_ray(num_cpus=2):
        fn = functools.partial(top1, net, data, 1)
        executor = RayExecutor(num_cpus=1)
        executor.map(fn, configs[:2])  # start and warm the workers outside the timing
        t0 = time.perf_counter()
        remote = executor.map(fn, configs)
        ray_s = time.perf_counter() - t0
    rows.append(("RayExecutor(num_cpus=1), 2 CPUs", ray_s))

    print(f"# {args.n} accuracy evaluations (export + top-1 on {len(data.y['val'])} images)")
    print("| executor | wall s | speed-up of Ray vs this |")
    print("|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} | {s / ray_s:.2f}× |")
    print(f"Ray results == Local results: {remote == reference}")


if __name__ == "__main__":
    main()
