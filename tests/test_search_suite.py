"""The search suite's own parts: analytic parameter counts, HV curves, the table, stand-ins."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from benchmarks.search_suite import curve, nb201_params, problems
from nas.pareto import hypervolume
from nas.subnet import SubnetConfig
from search_spaces.nas_bench_201 import EDGES, config_from_arch_str


def _cell(op: str) -> SubnetConfig:
    return SubnetConfig(tuple((f"edge{e}", op) for e in EDGES))


def test_parameter_counts_match_the_published_range() -> None:
    """NAS-Bench-201 on CIFAR-10: 0.073 M (no convolution) to 1.53 M (all 3x3), as published."""
    low, high = nb201_params([_cell("none"), _cell("nor_conv_3x3")], 10)
    assert low == 73_306 and high == 1_531_546
    # one 1x1 edge adds 5 cells x (C^2 + 2C) for C = 16, 32, 64
    one = config_from_arch_str("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert nb201_params([one], 10)[0] - low == 5 * sum(c * c + 2 * c for c in (16, 32, 64))
    assert nb201_params([_cell("none")], 100)[0] - low == 64 * 90 + 90


def test_curve_is_monotone_and_ends_at_the_hypervolume() -> None:
    rng = np.random.default_rng(0)
    F = rng.random((60, 3))
    ok = rng.random(60) < 0.7
    c = curve(F, ok, 1.0)
    assert np.all(np.diff(c) >= 0)
    assert c[-1] == pytest.approx(hypervolume(F[ok], np.full(3, 1.01)))


def test_suite_lists_the_issue_s_problems() -> None:
    names = [p.name for p in problems()]
    assert len(names) == 24 and len(set(names)) == 24
    assert sum(p.constrained for p in problems()) == 3
    assert sum(len(p.objectives) == 3 for p in problems()) == 3


def test_true_hv_of_cifar10_problems_matches_the_data_readme() -> None:
    from benchmarks.data import NB201_TRUE_HV, SHARED_DATA
    from benchmarks.search_suite import Table, true_hv

    if not (SHARED_DATA / "nb201" / "nb201_acc_latency.csv").exists():
        pytest.skip("needs ../shared/data/nb201/nb201_acc_latency.csv")
    table = Table.load()
    for p in problems():
        if p.name.startswith("c10:") and len(p.objectives) == 2 and not p.constrained:
            hv, _ = true_hv(table.F(p), table.feasible(p))
            assert hv == pytest.approx(NB201_TRUE_HV[p.name.split(":")[1]], abs=1e-4)


def test_stand_ins_import_and_refuse_to_compute() -> None:
    """In a fresh interpreter: the placeholders import, subclass, decorate and never compute."""
    code = (
        "from benchmarks.peers import standins\n"
        "missing = standins.install()\n"
        "import importlib\n"
        "for name in missing:\n"
        "    importlib.import_module(name + '.sub.module')\n"
        "if 'fairseq' in missing:\n"
        "    from fairseq import libbleu\n"
        "    from fairseq.models import BaseFairseqModel, register_model\n"
        "    assert libbleu.__file__ is None\n"
        "    class M(BaseFairseqModel): pass\n"
        "    f = register_model('x')(len)\n"
        "    assert f is len\n"
        "    try:\n"
        "        register_model('x')(1, 2)\n"
        "    except RuntimeError:\n"
        "        print('refused')\n"
        "else:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused"


def test_tuning_problems_share_no_device_or_problem_with_the_suite() -> None:
    """Defaults are chosen on the tuning problems; the suite reports only problems unseen there."""
    from benchmarks.data import NB201_DEVICES
    from benchmarks.search_tuning import TUNING_DEVICES, tuning_problems

    suite = {p.name for p in problems()}
    tuning = tuning_problems()
    assert not suite & {p.name for p in tuning}
    assert not set(TUNING_DEVICES) & set(NB201_DEVICES)
    for p in tuning:
        devices = {o.split(":")[1] for o in p.objectives if o.startswith("lat:")}
        assert devices <= set(TUNING_DEVICES), p.name
