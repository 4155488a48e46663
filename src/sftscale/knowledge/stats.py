"""Paired bootstrap intervals for the knowledge table, and the table's markdown rendering.

Every row of the table (a starting point under a condition: after the facts stage, before
it, or with the facts in the prompt) is scored on the SAME questions, so differences between
rows are estimated with a PAIRED bootstrap: each replicate draws one multinomial count vector
over question indices and applies it to every row (``sftscale.fit.bootstrap.paired_bootstrap_means``,
shared with the scaling-law fits); when a row has several facts-stage seeds, seeds are
resampled too (the same draw for every row). Intervals are percentile intervals.

Not handled: per-fact clustering (questions about the same fact are treated as independent
items), multiple-comparison corrections, BCa intervals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..fit.bootstrap import paired_bootstrap_means


def bootstrap_rows(scores: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0,
                   paired: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Point means (R,) and bootstrap replicates (B, R) of R rows of per-item scores.

    ``scores[r]`` is (S_r, I): one line of I item scores per seed of row r (NaN: not scored).
    All rows share the I items. ``paired=False`` draws items independently per row (for
    comparison only: it ignores that the rows answer the same questions)."""
    cells, cell_row, cell_seed = [], [], []
    n_items = None
    for r, s in enumerate(scores):
        s = np.atleast_2d(np.asarray(s, float))
        if n_items is None:
            n_items = s.shape[1]
        if s.shape[1] != n_items:
            raise ValueError(f"row {r} has {s.shape[1]} items, row 0 has {n_items}")
        for k in range(s.shape[0]):
            cells.append(s[k])
            cell_row.append(r)
            cell_seed.append(k)
    rng = np.random.default_rng(seed)
    levels, point, reps = paired_bootstrap_means(np.asarray(cell_row, float), np.asarray(cell_seed),
                                                 np.vstack(cells), n_boot, rng, paired=paired)
    return point, reps


def interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [a, 1.0 - a])
    return float(lo), float(hi)


def paired_contrast(rows: Sequence[np.ndarray], weights: Sequence[float], n_boot: int = 2000,
                    level: float = 0.95, seed: int = 0, paired: bool = True) -> dict:
    """sum_r weights[r] * mean(rows[r]) over the same items, with a bootstrap interval.

    ``rows[r]``: (I,) or (S, I) per-item scores. Returns diff, lo, hi and ``p_le_0`` (share of
    replicates with a contrast <= 0). ``[a, b]`` with ``[1, -1]`` is a difference of means;
    ``[a_after, a_before, b_after, b_before]`` with ``[1, -1, -1, 1]`` a difference of gains."""
    point, reps = bootstrap_rows(rows, n_boot=n_boot, seed=seed, paired=paired)
    w = np.asarray(weights, float)
    d = reps @ w
    lo, hi = interval(d, level)
    return {"diff": float(point @ w), "lo": lo, "hi": hi, "p_le_0": float(np.mean(d <= 0))}


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0, paired: bool = True) -> dict:
    """Mean(a) - mean(b) over the same items with a bootstrap interval (see paired_contrast)."""
    return paired_contrast([a, b], [1.0, -1.0], n_boot, level, seed, paired)


def _fmt(c: dict | None, pct: bool = True) -> str:
    if not c or c.get("mean") is None:
        return "–"
    f = 100.0 if pct else 1.0
    return f"{c['mean'] * f:.1f} [{c['lo'] * f:.1f}, {c['hi'] * f:.1f}]"


def table_markdown(table: dict) -> str:
    """The table in the paper's shape (starting point x question type), plus the extras."""
    lv = int(round(table["bootstrap"]["level"] * 100))
    out = [f"# Knowledge injection: {table['name']}", "",
           f"Base model `{table['model']}`, facts: `{table['facts']}` "
           f"({table['n_facts']} facts; {table['n_items']['direct']} direct and "
           f"{table['n_items']['multihop']} multihop questions). Exact match in %, "
           f"[{lv}% paired bootstrap interval, {table['bootstrap']['n_boot']} replicates].", ""]
    for cond, title in (("injected", "After finetuning on the facts"),
                        ("before", "Before the facts stage (closed book)"),
                        ("retrieval", "Retrieval baseline (facts in the prompt, no fact finetuning)")):
        rows = [r for r in table["rows"] if r["condition"] == cond]
        if not rows:
            continue
        out += [f"## {title}", "", "| starting point | direct em | multihop em | direct contains "
                "| multihop contains | direct format | multihop format |",
                "|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['start']} | {_fmt(r['direct'].get('em'))} | {_fmt(r['multihop'].get('em'))} "
                       f"| {_fmt(r['direct'].get('contains'))} | {_fmt(r['multihop'].get('contains'))} "
                       f"| {_fmt(r['direct'].get('format_ok'))} | {_fmt(r['multihop'].get('format_ok'))} |")
        out.append("")
    diffs = [d for d in table.get("differences", []) if d["metric"] in ("em", "contains")]
    if diffs:
        out += ["## Differences between starting points (paired over questions; f1 in table.json)", "",
                "`gain` compares what the facts stage added: (injected − before) of a minus "
                "(injected − before) of b. A start that already answers some questions closed "
                "book (the right answer format and a lucky guess) leads after injection by that "
                "much without having learnt the facts any better.", "",
                "| condition | a − b | question type | metric | difference (pts) | paired interval "
                "| unpaired interval | P(diff ≤ 0) |", "|---|---|---|---|---|---|---|---|"]
        for d in diffs:
            out.append(f"| {d['condition']} | {d['a']} − {d['b']} | {d['question_type']} | {d['metric']} "
                       f"| {100 * d['diff']:+.1f} | [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] "
                       f"| [{100 * d['lo_unpaired']:+.1f}, {100 * d['hi_unpaired']:+.1f}] "
                       f"| {d['p_le_0']:.3f} |")
        out.append("")
    rec = [r for r in table["rows"] if r.get("recall")]
    if rec:
        out += ["## Fact recall (cloze, %): forgetting of corpus facts, learning of new facts", "",
                "| starting point | condition | corpus facts | new facts |", "|---|---|---|---|"]
        for r in rec:
            c, h = r["recall"].get("corpus"), r["recall"].get("new")
            out.append(f"| {r['start']} | {r['condition']} | "
                       f"{'–' if c is None else f'{100 * c:.1f}'} | {'–' if h is None else f'{100 * h:.1f}'} |")
        out.append("")
    return "\n".join(out)


__all__ = ["bootstrap_rows", "interval", "paired_contrast", "paired_difference", "table_markdown"]
