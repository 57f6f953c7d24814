"""Peer searchers (DyNAS-T, Syne Tune) driven on the benchmark's table problems.

They run in the benchmark's own environment (``benchmarks/peers/.venv``; install command in
``benchmarks/README_search.md``), never in the project's dependencies. Each driver takes the
table of a problem (option-index rows and their minimised objectives) and returns the objective
rows of every evaluation the peer asked for, in order, repeats included: the suite computes
every hypervolume itself, with the same code as for its own searchers.
"""
