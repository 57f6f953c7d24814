"""The search suite's CSV as the Markdown tables of ``benchmarks/README_search.md``.

    python -m benchmarks.search_suite_markdown /tmp/suite.csv [more.csv ...]

Several CSVs (e.g. one per method group) are concatenated first. Tables: HV ratio at 100 / 300
/ 500 evaluations (mean ± sd, best mean in bold), evaluations to 99 / 99.5 % (median over
seeds), the across-suite summary, the constrained problems and the default's goals per problem.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from benchmarks.search_suite import PEERS

COLUMNS = {
    "portfolio": "portfolio",
    "pymoo-nsga2": "pymoo-nsga2",
    "dynast-linas": "LINAS",
    "dynast-evolutionary": "DyNAS-T evo",
    "synetune-morea": "MOREA",
    "synetune-random": "ST random",
    "random": "random",
}
DEFAULT = "portfolio"


def _methods(frame: pd.DataFrame) -> list[str]:
    return [m for m in COLUMNS if m in set(frame.method)]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def hv_table(frame: pd.DataFrame, budget: int) -> str:
    at = frame[frame.budget == budget]
    stats = at.groupby(["problem", "method"])["hv_ratio"].agg(["mean", "std", "count"])
    methods = [m for m in _methods(frame) if m in set(at.method)]
    rows = []
    for problem in sorted(at.problem.unique()):
        means = {m: stats["mean"].get((problem, m), np.nan) for m in methods}
        best = np.nanmax(list(means.values()))
        cells = [f"`{problem}`"]
        for m in methods:
            if np.isnan(means[m]):
                cells.append("")
                continue
            sd = stats["std"].get((problem, m))
            text = f"{100 * means[m]:.2f} ± {100 * (0 if np.isnan(sd) else sd):.2f}"
            cells.append(f"**{text}**" if means[m] == best else text)
        rows.append(cells)
    return _table(["problem", *[COLUMNS[m] for m in methods]], rows)


def evals_table(frame: pd.DataFrame, target: float) -> tuple[str, dict[str, float]]:
    """Median evaluations to ``target`` per problem and method; the suite median per method."""
    col = f"evals_to_{target}"
    last = frame[frame.budget == frame.groupby(["problem", "method"])["budget"].transform("max")]
    methods = _methods(frame)
    rows, per_method = [], {m: [] for m in methods}
    for problem in sorted(last.problem.unique()):
        cells = [f"`{problem}`"]
        for m in methods:
            runs = last[(last.problem == problem) & (last.method == m)]
            if not len(runs):
                cells.append("")
                continue
            cap = int(runs.budget.max())
            values = runs[col].fillna(cap + 1).to_numpy()
            med = float(np.median(values))
            per_method[m].append(med)
            reached = int(runs[col].notna().sum())
            text = f">{cap}" if reached == 0 else f"{med:.0f}"
            if 0 < reached < len(runs):
                text += f" ({reached}/{len(runs)})"
            cells.append(text)
        rows.append(cells)
    summary = {m: float(np.median(v)) for m, v in per_method.items() if v}
    return _table(["problem", *[COLUMNS[m] for m in methods]], rows), summary


def rank_table(frame: pd.DataFrame) -> str:
    """Mean rank of the mean HV over the problems every listed method ran, and the worst."""
    means = frame.groupby(["problem", "method", "budget"])["hv_ratio"].mean().reset_index()
    methods = [m for m in _methods(frame) if m != "dynast-linas"]
    rows = []
    for budget in (100, 300, 500):
        m = means[means.budget == budget].pivot(
            index="problem", columns="method", values="hv_ratio"
        )
        m = m[[c for c in methods if c in m]].dropna()
        ranks = m.rank(axis=1, ascending=False).mean()
        cells = [str(budget)]
        for method in methods:
            if method not in m:
                cells.append("")
                continue
            worst = m[method].idxmin()
            cells.append(f"{ranks[method]:.2f}, worst {100 * m[method].min():.2f} % (`{worst}`)")
        rows.append(cells)
    return _table(["budget", *[COLUMNS[c] for c in methods]], rows)


def constrained_table(frame: pd.DataFrame) -> str:
    cons = frame[frame.front_feasible_share.notna()] if "front_feasible_share" in frame else None
    if cons is None or not len(cons):
        return ""
    methods = _methods(cons)
    agg = cons.groupby(["problem", "method", "budget"]).agg(
        hv=("hv_ratio", "mean"), share=("front_feasible_share", "mean"), n=("seed", "count")
    )
    rows = []
    for problem in sorted(cons.problem.unique()):
        for budget in (100, 300, 500):
            cells = [f"`{problem}`" if budget == 100 else "", str(budget)]
            for m in methods:
                key = (problem, m, budget)
                if key not in agg.index:
                    cells.append("")
                    continue
                r = agg.loc[key]
                cells.append(f"{100 * r.hv:.2f} % ({r.share:.2f})")
            rows.append(cells)
    return _table(["problem", "budget", *[COLUMNS[m] for m in methods]], rows)


def goals_table(frame: pd.DataFrame) -> str:
    """The default's goals per problem: HV at 500, against random at 500, against peers."""
    mean = frame.groupby(["problem", "method", "budget"])["hv_ratio"].mean()

    def get(problem: str, method: str, budget: int) -> float:
        return float(mean.get((problem, method, budget), np.nan))

    rows = []
    for problem in sorted(frame.problem.unique()):
        cells = [f"`{problem}`", f"{100 * get(problem, DEFAULT, 500):.2f}"]
        cells.append(f"{get(problem, DEFAULT, 100) / get(problem, 'random', 500):.4f}")
        for budget in (100, 300):
            peers = {p: get(problem, p, budget) for p in PEERS}
            peers = {p: v for p, v in peers.items() if not np.isnan(v)}
            if not peers:
                cells.append("")
                continue
            best = max(peers, key=peers.__getitem__)
            gap = 100 * (get(problem, DEFAULT, budget) - peers[best])
            cells.append(f"{gap:+.2f} ({COLUMNS[best]})")
        rows.append(cells)
    header = [
        "problem",
        f"{DEFAULT} HV@500 %",
        "HV@100 / random HV@500",
        "vs best peer @100, pp",
        "vs best peer @300, pp",
    ]
    return _table(header, rows)


def markdown(frame: pd.DataFrame) -> str:
    parts = []
    for budget in (100, 300, 500):
        parts.append(f"HV ratio in % at {budget} evaluations, mean ± sd over seeds\n")
        parts.append(hv_table(frame, budget) + "\n")
    for target in (0.99, 0.995):
        table, summary = evals_table(frame, target)
        parts.append(f"Evaluations to {100 * target:g} % of the true HV, median over seeds\n")
        parts.append(table + "\n")
        listed = ", ".join(f"{COLUMNS[m]} {v:.0f}" for m, v in summary.items())
        parts.append(f"Median over the problems (not reached = budget + 1): {listed}\n")
    parts.append("Mean rank of the mean HV (1 = best; LINAS left out) and the worst problem\n")
    parts.append(rank_table(frame) + "\n")
    parts.append("Constrained problems: feasible HV ratio (feasible share of the front)\n")
    parts.append(constrained_table(frame) + "\n")
    parts.append(f"Goals of `{DEFAULT}` per problem\n")
    parts.append(goals_table(frame) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    paths = sys.argv[1:] if argv is None else argv
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    print(markdown(frame))


if __name__ == "__main__":
    main()
