"""Features of encoded configs: a stock scikit-learn transformer built from a search space.

The input is the integer matrix of :meth:`SearchSpace.encode_many` (one option index per
dimension), so pipelines stay cheap to fit, clone and persist. Three stock steps do the work:

1. ``mask``: a :class:`~sklearn.preprocessing.FunctionTransformer` that sets the index of every
   dimension of a block skipped by elastic depth (``Choice.active_if``) to ``-1``;
2. ``ordinal``: ordered dimensions become the option value divided by the largest option
   (``kernel 3/5/7 → 0.43/0.71/1``; non-numeric ordered options use ``(index + 1) / n``), and
   ``-1`` becomes ``0``;
3. ``onehot``: unordered dimensions (and every dimension with ``encoding="onehot"``) go through a
   :class:`~sklearn.preprocessing.OneHotEncoder` whose ``-1`` category is dropped, so a skipped
   block is all zeros, as in Once-for-All's accuracy-predictor encoder.

Dimensions with a single option carry no information and are left out.

:class:`~nas.space.Numeric` dimensions (bounded integers or reals) go to a fourth stock step,
``numeric``: ``(value - low) / (high - low)``, inactive values 0, so a value between measured
ones predicts by interpolation. ``user_features=`` appends the standardised columns of a
registered hook (:mod:`predictors.user_features`), e.g. per-layer analytic MACs.

Cell spaces (every dimension named ``edge{j}<-{i}``, an operation on the edge from node ``i`` to
node ``j`` of a DAG, with a ``"none"`` option, as NAS-Bench-201) get more stock blocks when
``cell_pruning`` is on:

- ``effective``: the one-hot of the operations that can affect the cell output (an edge counts
  only if a path of non-``none`` edges leads from its target node to the output node; others
  become ``"none"``): a compiler drops the others as dead code, while an operation whose *input*
  is disconnected still runs on the zero tensor;
- ``counts`` (when every edge has the same options): how many edges hold each operation, raw and
  effective, times :data:`OP_COUNT_WEIGHT`. The per-edge one-hots then only describe deviations
  from a per-operation cost, which a ridge penalty shrinks;
- ``disconnected``: a flag for cells whose output is disconnected from the input (no path of
  non-``none`` edges): their latency is near zero on some devices.

With ``cell_paths`` (off by default; cell spaces whose edges share their options), one more
block describes the cell as a network rather than a bag of operations:

- ``paths``: on the cell pruned to its input→output paths, the number of such paths and, for
  every non-empty set of operations other than ``none``, the largest number of edges holding
  one of them along a single path (:func:`cell_path_lengths`). On NAS-Bench-201 the set
  {``nor_conv_1x1``, ``nor_conv_3x3``} gives the number of convolutions on the deepest path,
  the effective depth that decides much of a cell's accuracy; per-edge one-hots only reach it
  through interactions a predictor fitted on 50-100 cells cannot learn.

The raw one-hot is kept, since hardware may still run dead edges. These choices were made by
cross-validation inside 100-architecture training sets of NAS-Bench-201 latency
(``benchmarks/predictors_nb201.py``, seeds not reported there).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, cast, get_args

import numpy as np

from nas.errors import ConfigError, format_choice_error
from nas.space import Choice, Numeric, SearchSpace

if TYPE_CHECKING:  # scikit-learn is imported where a transformer is built or compiled
    from sklearn.pipeline import Pipeline

Encoding = Literal["ordinal", "onehot"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
INACTIVE = -1
OP_COUNT_WEIGHT = 4.0
"""Scale of the per-operation edge counts of cell spaces (one edge more adds this much)."""
MAX_PATH_SET_OPTIONS = 6
"""Cells with more operations than this (besides ``none``) get path lengths for single
operations and for all of them only, not for every set (2^k - 1 columns)."""


def mask_inactive(
    X: np.ndarray, gates: list[list[object]], numeric_columns: Sequence[int] = ()
) -> np.ndarray:
    """Set inactive dimensions to ``-1`` (numeric columns: to ``NaN``).

    Args:
        X: Option indices, shape ``(n, n_dims)`` (float when the space has numeric columns).
        gates: ``[column, depth_column, active_by_depth_index]`` per gated dimension, where
            ``active_by_depth_index[i]`` says whether the column is active when the depth
            dimension has option index ``i``.
        numeric_columns: Columns holding values of numeric dimensions rather than indices.
    """
    X = np.asarray(X)
    floating = X.dtype.kind == "f" and len(numeric_columns) > 0
    out = np.array(X, dtype=np.float64 if floating else np.int64, copy=True)
    numeric = set(numeric_columns)
    for column, depth_column, active_by_index in gates:
        depth = out[:, depth_column].astype(np.int64)  # type: ignore[index]
        active = np.asarray(active_by_index, dtype=bool)[depth]
        out[~active, column] = np.nan if column in numeric else INACTIVE  # type: ignore[index]
    return out


def scale_numeric(X: np.ndarray, lows: list[float], highs: list[float]) -> np.ndarray:
    """``(value - low) / (high - low)`` per column; ``NaN`` (inactive) becomes 0."""
    X = np.asarray(X, dtype=np.float64)
    low, high = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    return np.nan_to_num((X - low[None, :]) / (high - low)[None, :], nan=0.0)


def scale_ordinal(X: np.ndarray, tables: list[list[float]]) -> np.ndarray:
    """Map option indices to scaled option values per column; ``-1`` (inactive) becomes 0.

    Args:
        X: Option indices of the selected columns, shape ``(n, len(tables))``.
        tables: Per column, the scaled value of each option index.
    """
    X = np.asarray(X, dtype=np.int64)
    width = max((len(t) for t in tables), default=0) + 1
    lookup = np.zeros((len(tables), width))
    for c, table in enumerate(tables):
        lookup[c, 1 : len(table) + 1] = table
    return lookup[np.arange(len(tables))[None, :], X + 1]


def prune_cell(
    X: np.ndarray,
    edges: list[list[int]],
    none_index: list[int],
    keep: str = "path",
    count_options: int | None = None,
    weight: float = 1.0,
) -> np.ndarray:
    """Set the edges that do not count to ``none`` (or count the operations, see below).

    Args:
        X: Operation indices, one column per edge, shape ``(n, len(edges))``.
        edges: ``[to_node, from_node]`` per column; node 0 is the input, the largest the output.
        none_index: Per column, the option index of ``"none"``.
        keep: ``"path"`` keeps the edges on an input→output path of non-``none`` edges;
            ``"live"`` keeps every edge whose output reaches the output node (not dead code),
            even when its *input* is disconnected, since such an operation still runs on zeros.
        count_options: If given (every column having these many options, ``none`` at the same
            index), return instead, per option other than ``none``, the number of edges holding
            it in ``X`` and then among the kept edges, times ``weight``: shape
            ``(n, 2 * (count_options - 1))``. One function does both so that saved pipelines
            hold only functions that ``predictors.persistence.TRUSTED_TYPES`` lists.
        weight: Scale of the counts.
    """
    if keep not in ("path", "live"):
        raise ConfigError(format_choice_error("keep", keep, ["path", "live"]))
    pruned = _prune(X, edges, none_index, keep)
    if count_options is None:
        return pruned
    X = np.asarray(X, dtype=np.int64)
    ops = [o for o in range(count_options) if o != none_index[0]]
    counts = [np.equal(M, o).sum(axis=1) for M in (X, pruned) for o in ops]
    return weight * np.stack(counts, axis=1).astype(np.float64)


def _edge_order(edges: list[list[int]]) -> list[int]:
    """Edge columns sorted by target node: every source node is final when its edges are seen."""
    return sorted(range(len(edges)), key=lambda k: (edges[k][0], edges[k][1]))


def _prune(X: np.ndarray, edges: list[list[int]], none_index: list[int], keep: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.int64)
    n_nodes = max(max(e) for e in edges) + 1
    alive = np.asarray(none_index)[None, :] != X
    order = _edge_order(edges)
    forward = np.ones((len(X), n_nodes), dtype=bool)
    if keep == "path":
        forward[:, 1:] = False
        for k in order:  # edges sorted by target node: sources are final when visited
            to, frm = edges[k]
            forward[:, to] |= forward[:, frm] & alive[:, k]
    backward = np.zeros((len(X), n_nodes), dtype=bool)
    backward[:, n_nodes - 1] = True
    for k in reversed(order):
        to, frm = edges[k]
        backward[:, frm] |= backward[:, to] & alive[:, k]
    out = X.copy()
    for k, (to, frm) in enumerate(edges):
        effective = alive[:, k] & forward[:, frm] & backward[:, to]
        out[~effective, k] = none_index[k]
    return out


def cell_path_lengths(
    X: np.ndarray,
    edges: list[list[int]],
    none_index: list[int],
    option_sets: list[list[int]],
) -> np.ndarray:
    """Number of input→output paths, then per option set the most of its edges on one path.

    Args:
        X: Operation indices, one column per edge, shape ``(n, len(edges))``.
        edges: ``[to_node, from_node]`` per column; node 0 is the input, the largest the output.
        none_index: Per column, the option index of ``"none"``.
        option_sets: Sets of option indices; for each, the largest number of edges holding one
            of them along a single path of non-``none`` edges from the input to the output.

    Returns:
        Shape ``(n, 1 + len(option_sets))``; all zeros for a disconnected cell.

    Example:
        >>> edges = [[1, 0], [2, 0], [2, 1]]  # 0→1→2 and 0→2; option 0 is none
        >>> cell_path_lengths(np.array([[2, 1, 2]]), edges, [0, 0, 0], [[2], [1, 2]]).tolist()
        [[2.0, 2.0, 2.0]]
    """
    pruned = _prune(X, edges, none_index, "path")
    alive = pruned != np.asarray(none_index)[None, :]
    n_nodes = max(max(e) for e in edges) + 1
    order = _edge_order(edges)
    paths = np.zeros((len(pruned), n_nodes))
    paths[:, 0] = 1.0
    for k in order:  # edges sorted by target node: sources are final when visited
        to, frm = edges[k]
        paths[:, to] += np.where(alive[:, k], paths[:, frm], 0.0)
    columns = [paths[:, -1]]
    for options in option_sets:
        longest = np.full((len(pruned), n_nodes), -np.inf)
        longest[:, 0] = 0.0
        for k in order:
            to, frm = edges[k]
            step = longest[:, frm] + np.isin(pruned[:, k], options)
            longest[:, to] = np.where(
                alive[:, k], np.maximum(longest[:, to], step), longest[:, to]
            )
        columns.append(np.where(np.isfinite(longest[:, -1]), longest[:, -1], 0.0))
    return np.stack(columns, axis=1)


def path_option_sets(space: SearchSpace) -> list[list[int]]:
    """Option-index sets of :func:`cell_path_lengths` for a cell space with shared options."""
    first = _cell_dims(space)[0]
    none = first.options.index("none")
    options = [i for i in range(len(first.options)) if i != none]
    if len(options) > MAX_PATH_SET_OPTIONS:
        return [[o] for o in options] + [options]
    return [
        list(subset)
        for size in range(1, len(options) + 1)
        for subset in itertools.combinations(options, size)
    ]


def cell_disconnected(X: np.ndarray, edges: list[list[int]], none_index: list[int]) -> np.ndarray:
    """``1.0`` where no path of non-``none`` edges joins the input to the output, else ``0.0``."""
    pruned = prune_cell(X, edges, none_index)
    return (pruned == np.asarray(none_index)[None, :]).all(axis=1, keepdims=True).astype(float)


_EDGE = re.compile(r"^edge(\d+)<-(\d+)$")


def cell_edges(space: SearchSpace) -> list[list[int]] | None:
    """``[to, from]`` per dimension if ``space`` is a cell DAG space (module doc), else None."""
    edges = []
    for dim in space.dims:
        if not isinstance(dim, Choice):
            return None
        match = _EDGE.match(dim.name)
        if match is None or "none" not in dim.options or dim.active_if is not None:
            return None
        to, frm = int(match.group(1)), int(match.group(2))
        if frm >= to:
            return None
        edges.append([to, frm])
    return edges or None


def _cell_dims(space: SearchSpace) -> tuple[Choice, ...]:
    """The dimensions of a cell space, which :func:`cell_edges` checked are all Choice."""
    return cast("tuple[Choice, ...]", space.dims)


def supports_cell_paths(space: SearchSpace) -> bool:
    """Whether ``space`` is a cell space whose edges share their options (``cell_paths``)."""
    return cell_edges(space) is not None and _shared_options(space)


def _shared_options(space: SearchSpace) -> bool:
    """Whether every dimension has the same options (so per-operation counts make sense)."""
    return len({tuple(d.options) for d in _cell_dims(space)}) == 1


def _scaled_values(options: tuple[object, ...]) -> list[float]:
    numeric = all(isinstance(o, int | float) and not isinstance(o, bool) for o in options)
    if numeric:
        top = max(abs(float(o)) for o in options)  # type: ignore[arg-type]
        if top > 0:
            return [float(o) / top for o in options]  # type: ignore[arg-type]
    n = len(options)
    return [(i + 1) / n for i in range(n)]


def feature_columns(space: SearchSpace, encoding: Encoding = "ordinal") -> dict[str, list[int]]:
    """Which encoded columns go to the ``ordinal``, ``onehot`` and ``numeric`` steps."""
    if encoding not in ENCODINGS:
        raise ConfigError(format_choice_error("encoding", encoding, list(ENCODINGS)))
    ordinal: list[int] = []
    onehot: list[int] = []
    numeric: list[int] = []
    for i, dim in enumerate(space.dims):
        if isinstance(dim, Numeric):
            numeric.append(i)
            continue
        if len(dim.options) < 2:
            continue
        if dim.ordered and encoding == "ordinal":
            ordinal.append(i)
        else:
            onehot.append(i)
    return {"ordinal": ordinal, "onehot": onehot, "numeric": numeric}


def make_features(
    space: SearchSpace,
    *,
    encoding: Encoding = "ordinal",
    cell_pruning: bool | None = None,
    cell_paths: bool = False,
    user_features: str | None = None,
) -> Pipeline:
    """Transformer from encoded configs (``space.encode_many``) to a dense float feature matrix.

    Args:
        space: The search space whose encodings the transformer receives.
        encoding: ``"ordinal"`` scales ordered dimensions and one-hot encodes unordered ones;
            ``"onehot"`` one-hot encodes every dimension (Once-for-All's encoder).
        cell_pruning: Add the effective-operation, operation-count and disconnected-cell features
            of cell DAG spaces (module doc); ``None`` turns them on exactly when
            :func:`cell_edges` recognises the space.
        cell_paths: Add the path-count and longest-path features of cell spaces (module doc);
            needs a cell space whose edges share their options (:func:`supports_cell_paths`).
        user_features: Name of a hook registered in :mod:`predictors.user_features` whose
            standardised columns are appended.

    Example:
        >>> import search_spaces
        >>> space = search_spaces.get("nas_bench_201")
        >>> X = space.encode_many([space.smallest(), space.largest()])
        >>> make_features(space).fit_transform(X).shape
        (2, 69)
        >>> make_features(space, cell_paths=True).fit_transform(X).shape
        (2, 85)
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    names = space.names
    gates: list[list[object]] = []
    for i, dim in enumerate(space.dims):
        if dim.active_if is not None:
            depth_name, j = dim.active_if
            depth_column = names.index(depth_name)
            depth_options = space.dims[depth_column].options  # type: ignore[union-attr]
            active = [float(v) > j for v in depth_options]
            gates.append([i, depth_column, active])
    columns = feature_columns(space, encoding)
    transformers: list[tuple[str, object, list[int]]] = []
    if columns["numeric"]:
        bounds = {
            "lows": [float(space.dims[i].low) for i in columns["numeric"]],  # type: ignore[union-attr]
            "highs": [float(space.dims[i].high) for i in columns["numeric"]],  # type: ignore[union-attr]
        }
        transformers.append(
            (
                "numeric",
                FunctionTransformer(scale_numeric, kw_args=bounds, feature_names_out="one-to-one"),
                columns["numeric"],
            )
        )
    if columns["ordinal"]:
        tables = [_scaled_values(space.dims[i].options) for i in columns["ordinal"]]  # type: ignore[union-attr]
        transformers.append(
            (
                "ordinal",
                FunctionTransformer(
                    scale_ordinal, kw_args={"tables": tables}, feature_names_out="one-to-one"
                ),
                columns["ordinal"],
            )
        )
    if columns["onehot"]:
        categories = [
            list(range(INACTIVE, len(space.dims[i].options)))  # type: ignore[union-attr]
            for i in columns["onehot"]
        ]
        transformers.append(
            (
                "onehot",
                OneHotEncoder(
                    categories=categories,
                    drop=[INACTIVE] * len(categories),
                    sparse_output=False,
                    dtype=np.float64,
                ),
                columns["onehot"],
            )
        )
    if not transformers:
        raise ConfigError(f"search space {space.name!r} has no dimension with two or more options")
    edges = cell_edges(space)
    if cell_pruning and edges is None:
        raise ConfigError(
            f"cell_pruning=True needs a cell space (dimensions 'edge<to><-<from>' with a 'none' "
            f"option); search space {space.name!r} is not one"
        )
    if cell_paths and not supports_cell_paths(space):
        raise ConfigError(
            f"cell_paths=True needs a cell space whose edges share their options; search space "
            f"{space.name!r} is not one"
        )
    if edges is not None and cell_pruning is not False:
        cell = _cell_dims(space)
        kw = {"edges": edges, "none_index": [d.options.index("none") for d in cell]}
        all_columns = list(range(len(space.dims)))
        effective = Pipeline(
            [
                ("prune", FunctionTransformer(prune_cell, kw_args={**kw, "keep": "live"})),
                (
                    "onehot",
                    OneHotEncoder(
                        categories=[list(range(len(d.options))) for d in cell],
                        sparse_output=False,
                        dtype=np.float64,
                    ),
                ),
            ]
        )
        transformers.append(("effective", effective, all_columns))
        if _shared_options(space):
            counts_kw = {
                **kw,
                "keep": "live",
                "count_options": len(cell[0].options),
                "weight": OP_COUNT_WEIGHT,
            }
            transformers.append(
                ("counts", FunctionTransformer(prune_cell, kw_args=counts_kw), all_columns)
            )
        transformers.append(
            ("disconnected", FunctionTransformer(cell_disconnected, kw_args=kw), all_columns)
        )
    if cell_paths:
        kw_paths = {
            "edges": edges,
            "none_index": [d.options.index("none") for d in _cell_dims(space)],
            "option_sets": path_option_sets(space),
        }
        transformers.append(
            (
                "paths",
                FunctionTransformer(cell_path_lengths, kw_args=kw_paths),
                list(range(len(space.dims))),
            )
        )
    if user_features is not None:
        from predictors.user_features import apply_user_features, check_hook, space_columns

        check_hook(user_features, space)
        hook_kw = {"hook": user_features, **space_columns(space)}
        user = Pipeline(
            [
                ("hook", FunctionTransformer(apply_user_features, kw_args=hook_kw)),
                ("scale", StandardScaler()),
            ]
        )
        transformers.append(("user", user, list(range(len(space.dims)))))
    mask_kw: dict[str, object] = {"gates": gates}
    if columns["numeric"]:
        mask_kw["numeric_columns"] = columns["numeric"]
    return Pipeline(
        [
            (
                "mask",
                FunctionTransformer(
                    mask_inactive, kw_args=mask_kw, feature_names_out="one-to-one"
                ),
            ),
            ("columns", ColumnTransformer(transformers, remainder="drop")),
        ]
    )


def feature_schema(
    space: SearchSpace,
    encoding: Encoding = "ordinal",
    cell_pruning: bool | None = None,
    cell_paths: bool = False,
    user_features: str | None = None,
) -> dict[str, object]:
    """JSON description of the features (stored in a predictor's manifest)."""
    columns = feature_columns(space, encoding)
    edges = cell_edges(space)
    pruned = edges is not None and cell_pruning is not False
    extra = 0
    if pruned:
        cell = _cell_dims(space)
        extra = sum(len(d.options) for d in cell) + 1
        if _shared_options(space):
            extra += 2 * (len(cell[0].options) - 1)
    if cell_paths:
        extra += 1 + len(path_option_sets(space))
    extra += len(columns["numeric"])
    schema_user: dict[str, object] = {}
    if user_features is not None:
        from predictors.user_features import get

        extra += get(user_features).n_features
        schema_user = {"user_features": user_features}
    numeric = (
        {"numeric": [space.names[i] for i in columns["numeric"]]} if columns["numeric"] else {}
    )
    return {
        "encoding": encoding,
        "input": "option indices in dimension order (SearchSpace.encode_many)",
        "ordinal": [space.names[i] for i in columns["ordinal"]],
        "onehot": [space.names[i] for i in columns["onehot"]],
        "masked_by_depth": [d.name for d in space.dims if d.active_if is not None],
        "cell_pruning": pruned,
        "cell_paths": cell_paths,
        **numeric,
        **schema_user,
        "n_features": len(columns["ordinal"])
        + sum(len(cast(Choice, space.dims[i]).options) for i in columns["onehot"])
        + extra,
    }


def compile_features(transformer: object) -> Callable[[np.ndarray], np.ndarray] | None:
    """Plain-NumPy equivalent of a *fitted* :func:`make_features` transformer, or ``None``.

    The stock steps re-validate their input on every call, which costs milliseconds per
    predictor for a batch of one config; the returned function applies the same fitted steps
    (``FunctionTransformer`` functions, ``ColumnTransformer`` column selection and ``hstack``,
    ``OneHotEncoder`` categories and dropped category) without that overhead. ``None`` means a
    step it does not know: use ``transformer.transform``. The function raises ``ValueError``
    on a value outside a one-hot encoder's categories, where the stock encoder would raise too.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    if isinstance(transformer, Pipeline):
        steps = [compile_features(step) for _, step in transformer.steps]
        if any(step is None for step in steps):
            return None

        def chain(X: np.ndarray) -> np.ndarray:
            for step in steps:
                X = step(X)  # type: ignore[misc]
            return X

        return chain
    if isinstance(transformer, FunctionTransformer):
        if transformer.validate or transformer.func is None:
            return None
        func, kw = transformer.func, dict(transformer.kw_args or {})
        return lambda X: func(X, **kw)
    if isinstance(transformer, OneHotEncoder):
        if (
            transformer.handle_unknown != "error"
            or transformer.sparse_output
            or getattr(transformer, "_infrequent_enabled", False)
            or not hasattr(transformer, "categories_")
        ):
            return None
        drop = transformer.drop_idx_
        blocks = []
        for j, categories in enumerate(transformer.categories_):
            keep = np.ones(len(categories), dtype=bool)
            if drop is not None and drop[j] is not None:
                keep[int(drop[j])] = False
            blocks.append((np.asarray(categories), keep))
        dtype = transformer.dtype

        def onehot(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X)
            out = []
            for j, (categories, keep) in enumerate(blocks):
                hit = X[:, j, None] == categories[None, :]
                if not hit.any(axis=1).all():
                    raise ValueError(f"column {j} has a value outside the encoder's categories")
                out.append(hit[:, keep])
            return np.ascontiguousarray(np.hstack(out), dtype=dtype)  # C order, as sklearn's

        return onehot
    if isinstance(transformer, ColumnTransformer):
        if (
            not hasattr(transformer, "transformers_")
            or transformer.sparse_output_
            or transformer.remainder != "drop"
        ):
            return None
        parts = []
        for _, step, columns in transformer.transformers_:
            if isinstance(step, str) and step == "drop":
                continue
            fn = compile_features(step)
            if fn is None or not isinstance(columns, list | np.ndarray):
                return None
            parts.append((fn, np.asarray(columns, dtype=np.intp)))

        def columns(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X)
            return np.hstack([fn(X[:, cols]) for fn, cols in parts])  # as sklearn's _hstack

        return columns
    return None
