"""NAS-Bench-201 cell space: 6 edges × 5 operations (15,625 cells), for table-based benchmarks.

It has no supernet here; it exists so searchers and predictors run on the published tables with
known exact Pareto fronts.
"""

from __future__ import annotations

from nas.space import Choice, SearchSpace
from nas.subnet import SubnetConfig

OPERATIONS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")


def build() -> SearchSpace:
    """Six categorical dimensions, one per cell edge."""
    dims = tuple(Choice(f"edge{edge}", OPERATIONS, ordered=False) for edge in EDGES)
    return SearchSpace("nas_bench_201", dims)


def config_from_arch_str(arch_str: str) -> SubnetConfig:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into a config."""
    ops = [tok.split("~")[0] for node in arch_str.split("+") for tok in node.strip("|").split("|")]
    return SubnetConfig(tuple((f"edge{e}", op) for e, op in zip(EDGES, ops, strict=True)))


def arch_str_from_config(config: SubnetConfig) -> str:
    """Inverse of :func:`config_from_arch_str`."""
    ops = [str(config[f"edge{e}"]) for e in EDGES]
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
