"""A search's hypervolume per step, with the reference point it is measured against.

A hypervolume means nothing without its reference point, so ``history.csv`` carries it on every
row (``ref.<objective>``, natural units: the worst value of each objective that still counts) and
``history.png`` states it in the title.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from nas.search.base import SearchResult


def history_frame(result: SearchResult) -> pd.DataFrame:
    """``step``, ``n_evals``, ``hypervolume`` and one ``ref.<objective key>`` column each."""
    frame = result.history.copy()
    reference = result.problem.from_minimised(result.reference_point)
    for objective, value in zip(result.problem.objectives, reference, strict=True):
        frame[f"ref.{objective.key}"] = float(value)
    return frame


def reference_label(result: SearchResult) -> str:
    """E.g. ``top1 >= 0.1, latency_ms@cpu <= 4.2``: the region whose volume is counted."""
    reference = result.problem.from_minimised(result.reference_point)
    return ", ".join(
        f"{o.key} {'>=' if o.direction == 'max' else '<='} {v:.4g}"
        for o, v in zip(result.problem.objectives, reference, strict=True)
    )


def plot_history(result: SearchResult, path: str | os.PathLike[str]) -> None:
    """Hypervolume of the feasible front against evaluations, the reference point in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = result.history
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(history["n_evals"], history["hypervolume"], where="post", color="C0")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume of the feasible front")
    ax.set_title(
        f"{result.problem.space.name}: hypervolume per step\nreference point: "
        f"{reference_label(result)}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_history(result: SearchResult, directory: str | os.PathLike[str]) -> None:
    """``history.csv`` (with the reference point) and ``history.png`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    history_frame(result).to_csv(out / "history.csv", index=False)
    plot_history(result, out / "history.png")
