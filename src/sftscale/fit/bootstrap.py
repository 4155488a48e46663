"""Per-N means of a curve and their bootstrap replicates (the uncertainty behind every fit).

- ``paired_bootstrap_means(cell_n, cell_seed, S, n_boot, rng, paired=True)``: per-N means of
  per-item scores under the paired item (and seed) bootstrap; ``analysis`` and
  ``knowledge.stats`` reuse it.
- ``curve_data(rows, items, n_boot, rng) -> CurveData``: the per-N points of one
  (model, task, metric) curve of a long table and their replicates, by the best method the
  data allow (see ``fitting``'s docstring: ``paired-items``, ``binomial``, ``seeds``, ``none``).
- ``item_matrix(items, col)``: the (cell, item) score matrix of a per-item table.
- ``curve_rng(seed, *keys)``: the generator of one curve, seeded by (seed, keys), so results
  do not depend on the order of rows or on other curves.

Not handled: stratified or block bootstraps, BCa corrections (percentiles only, in
``fitting``), weighting items.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import METRIC_TO_ITEM
from .forms import single_threaded


def _groups(cell_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = np.unique(cell_n)
    G = (cell_n[:, None] == levels[None, :]).astype(float)  # (C, K)
    return levels, G


def _seed_weights(cell_seed: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    seeds, seed_idx = np.unique(cell_seed, return_inverse=True)
    if seeds.size < 2:
        return None
    SC = rng.multinomial(seeds.size, np.full(seeds.size, 1.0 / seeds.size), size=n_boot)
    return SC[:, seed_idx].astype(float)  # (B, C)


def _combine_seeds(M: np.ndarray, W: np.ndarray | None, G: np.ndarray) -> np.ndarray:
    """Cell values M (B, C[, m]) -> per-N values (B, K[, m]) with seed weights W (B, C)."""
    squeeze = M.ndim == 2
    M3 = M[:, :, None] if squeeze else M
    Mt = np.moveaxis(M3, 1, 2)  # (B, m, C)
    plain = (Mt @ G) / G.sum(0)  # (B, m, K)
    if W is None:
        out = plain
    else:
        Wt = W[:, None, :]
        num = (Mt * Wt) @ G
        den = np.broadcast_to(Wt, Mt.shape) @ G
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / den, plain)  # no drawn seed at this N: all its seeds
    out = np.moveaxis(out, 2, 1)
    return out[:, :, 0] if squeeze else out


def resample_counts(rng: np.random.Generator, n_boot: int, n_items: int) -> np.ndarray:
    """(B, I) multinomial(I; uniform) counts, drawn as I uniform indices per row (fast)."""
    idx = rng.integers(0, n_items, size=(n_boot, n_items)) + n_items * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items).astype(float)


@single_threaded
def paired_bootstrap_means(cell_n: Sequence | np.ndarray, cell_seed: Sequence | np.ndarray, S: np.ndarray, n_boot: int,
                           rng: np.random.Generator, paired: bool = True
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-N means of per-item scores and their bootstrap replicates.

    cell_n, cell_seed: (C,) the N and seed of each cell; S: (C, I) or (C, I, m) scores,
    NaN where an item was not scored in a cell. ``paired=True`` draws one multinomial count
    vector over items per replicate and uses it in every cell; ``paired=False`` draws a
    fresh one per cell (for comparison only). Returns (levels (K,), point (K[, m]),
    replicates (B, K[, m])).
    """
    cell_n = np.asarray(cell_n, float)
    S = np.asarray(S, float)
    squeeze = S.ndim == 2
    if squeeze:
        S = S[:, :, None]
    C, n_items, _ = S.shape  # (cells, items I, metrics)
    present = np.isfinite(S)
    Sz = np.where(present, S, 0.0)
    P = present.astype(float)
    levels, G = _groups(cell_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_point = Sz.sum(1) / P.sum(1)  # (C, m)
    point = _combine_seeds(cell_point[None], None, G)[0]
    m = S.shape[2]
    if paired:
        cnt = resample_counts(rng, n_boot, n_items)  # (B, I): how often each item is drawn
        num = (cnt @ Sz.transpose(1, 0, 2).reshape(n_items, C * m)).reshape(n_boot, C, m)
        den = (cnt @ P.transpose(1, 0, 2).reshape(n_items, C * m)).reshape(n_boot, C, m)
    else:
        num = np.empty((n_boot, C, m))
        den = np.empty_like(num)
        for c in range(C):
            cnt = resample_counts(rng, n_boot, n_items)
            num[:, c] = cnt @ Sz[c]
            den[:, c] = cnt @ P[c]
    with np.errstate(invalid="ignore", divide="ignore"):
        M = np.where(den > 0, num / den, cell_point[None])
    W = _seed_weights(np.asarray(cell_seed), n_boot, rng)
    reps = _combine_seeds(M, W, G)
    if squeeze:
        return levels, point[:, 0], reps[:, :, 0]
    return levels, point, reps


@dataclass
class CurveData:
    """The per-N points of one (model, task, metric) curve and their bootstrap replicates."""

    model: str
    task: str
    metric: str
    n: np.ndarray
    y: np.ndarray
    reps: np.ndarray | None
    method: str
    n_items: int | None
    notes: list[str] = field(default_factory=list)


def item_matrix(items: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell_n (C,), cell_seed (C,), S (C, I)) from a per-item table for one curve."""
    piv = items.pivot_table(index=["n", "seed"], columns="item_id", values=col, aggfunc="mean")
    cell_n = np.array([k[0] for k in piv.index], float)
    cell_seed = np.array([str(k[1]) for k in piv.index])
    return cell_n, cell_seed, piv.to_numpy(dtype=float, na_value=np.nan)


#: recent ``curve_data`` results of aggregate rows (no items): fit_table, joint_fits and
#: forecast_table each build every curve's data with the same generator state, and with many
#: seeds the binomial draws dominate (1 s for 5,000 cells x 1,000 replicates); bounded in bytes
_MEMO: "OrderedDict[tuple, tuple[CurveData, Mapping[str, Any]]]" = OrderedDict()
_MEMO_MAX_BYTES = 256 << 20
_MEMO_COLS = ["n", "value", "seed", "n_items"]


def curve_data(rows: pd.DataFrame, items: pd.DataFrame | None, n_boot: int,
               rng: np.random.Generator) -> CurveData:
    """Build a CurveData from long-table rows of one curve and, optionally, its items.

    Without items, the result for the same rows, ``n_boot`` and generator state is taken
    from a small in-memory memo (a copy, with the generator left in the state the draws would
    have left it in): identical to building it again."""
    key = None
    if items is None and len(rows) >= 500:  # small curves are cheaper to build than to key
        import hashlib

        cols = [c for c in _MEMO_COLS if c in rows.columns]
        h = hashlib.sha1(pd.util.hash_pandas_object(rows[cols].astype(object), index=False)
                         .to_numpy().tobytes())
        h.update(repr((str(rows["model"].iloc[0]), str(rows["task"].iloc[0]),
                       str(rows["metric"].iloc[0]), rng.bit_generator.state)).encode())
        key = (h.hexdigest(), int(n_boot))
        hit = _MEMO.get(key)
        if hit is not None:
            _MEMO.move_to_end(key)
            rng.bit_generator.state = hit[1]
            return _copy(hit[0])
    cd = _curve_data(rows, items, n_boot, rng)
    if key is not None:
        _MEMO[key] = (_copy(cd), rng.bit_generator.state)
        while len(_MEMO) > 1 and sum(_size(v[0]) for v in _MEMO.values()) > _MEMO_MAX_BYTES:
            _MEMO.popitem(last=False)
    return cd


def _copy(cd: CurveData) -> CurveData:
    return replace(cd, n=cd.n.copy(), y=cd.y.copy(), notes=list(cd.notes),
                   reps=None if cd.reps is None else cd.reps.copy())


def _size(cd: CurveData) -> int:
    return cd.n.nbytes + cd.y.nbytes + (0 if cd.reps is None else cd.reps.nbytes)


def _curve_data(rows: pd.DataFrame, items: pd.DataFrame | None, n_boot: int,
                rng: np.random.Generator) -> CurveData:
    model, task, metric = (str(rows[c].iloc[0]) for c in ("model", "task", "metric"))
    notes: list[str] = []
    col = METRIC_TO_ITEM.get(metric, metric)
    if items is not None and col in items.columns and items[col].notna().any():
        it = items[items[col].notna()]
        cell_n, cell_seed, S = item_matrix(it, col)
        levels, point, reps = paired_bootstrap_means(cell_n, cell_seed, S, n_boot, rng)
        agg = rows.groupby("n")["value"].mean()
        diff = [int(k) for k in levels if k in agg.index and abs(agg[k] - point[levels == k][0]) > 1e-6]
        missing = sorted(int(k) for k in set(agg.index) - set(levels.tolist()))
        if missing:
            notes.append(f"N={missing} have aggregates but no per-item scores: left out of this curve")
        if diff:
            notes.append(f"aggregate {metric} differs from the per-item mean of '{col}' at N={diff}; "
                         "the per-item means are used")
        return CurveData(model, task, metric, levels, point, reps if n_boot > 0 else None,
                         "paired-items" + ("+seeds" if np.unique(cell_seed).size > 1 else ""),
                         int(S.shape[1]), notes)
    rows = rows.reset_index(drop=True)
    rank = rows.groupby("n").cumcount()  # rows without a seed: their rank within the N
    cell_seed = np.array([f"#{r}" if pd.isna(s) else str(s)
                          for s, r in zip(rows["seed"].astype(object), rank)])
    cell_n = rows["n"].to_numpy(float)
    vals = rows["value"].to_numpy(float)
    levels, G = _groups(cell_n)
    point = _combine_seeds(vals[None], None, G)[0]
    m = rows["n_items"].to_numpy(object)
    has_m = not any(pd.isna(v) for v in m)
    n_items = int(np.min(m.astype(float))) if has_m else None
    multi_seed = bool(np.any(G.sum(0) > 1))
    if n_boot <= 0:
        return CurveData(model, task, metric, levels, point, None, "none", n_items, notes)
    if has_m and np.all((vals >= 0) & (vals <= 1)):
        draws = rng.binomial(m.astype(np.int64)[None, :], vals[None, :], size=(n_boot, vals.size))
        M = draws / m.astype(float)[None, :]
        W = _seed_weights(cell_seed, n_boot, rng) if multi_seed else None
        return CurveData(model, task, metric, levels, point, _combine_seeds(M, W, G),
                         "binomial" + ("+seeds" if W is not None else ""), n_items, notes)
    if multi_seed:
        W = _seed_weights(cell_seed, n_boot, rng)
        M = np.broadcast_to(vals[None, :], (n_boot, vals.size))
        notes.append("no per-item scores or n_items: only seeds are resampled")
        return CurveData(model, task, metric, levels, point, _combine_seeds(M, W, G), "seeds",
                         n_items, notes)
    notes.append("no per-item scores, no n_items and one seed: no uncertainty can be estimated")
    return CurveData(model, task, metric, levels, point, None, "none", n_items, notes)


def curve_rng(seed: int, *keys: str) -> np.random.Generator:
    """The generator of one curve: seeded by ``seed`` and the crc32 of its keys."""
    h = zlib.crc32("\x1f".join(keys).encode())
    return np.random.default_rng([int(seed), h])


__all__ = ["CurveData", "curve_data", "curve_rng", "item_matrix", "paired_bootstrap_means", "resample_counts"]
