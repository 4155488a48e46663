"""A run directory's token shift: ``DIR/shift.json`` and ``DIR/shift/tokens.jsonl.gz``.

``collect(run_dir)`` reads the ``shift/`` directory of every done cell (the store says which
cells are done) and ``summarise`` groups its tokens by model, task, N and role (``format``,
``content``, ``other``, and ``all``). Per group:

- ``unshifted`` / ``marginal`` / ``shifted``: shares of tokens whose base rank is 1 / 2-3 / > 3
  (Lin et al. 2023), and ``mean_kl``: mean KL(finetuned || base) per token, in nats;
- ``by_position``: the shifted share and mean KL of the first ``FIRST_K`` response tokens and
  of the rest (Qi et al. 2024);
- for ``all``: ``format_of_shifted`` / ``content_of_shifted``, the shares of the shifted tokens
  that are format / content tokens.

Each number is a ratio over tokens; its interval is a percentile bootstrap over items (an
item's tokens, all seeds of that N together, are drawn as one unit; ``n_boot`` replicates,
95%). ``write(run_dir)`` writes both files (refusing to overwrite files sftscale did not
write); ``tokens.jsonl.gz`` holds one line per (cell, item) with the checkpoint path relative
to DIR, ``input_ids``, ``response_start`` and per response token ``base_rank``, ``kl`` and
``role``.

Not handled: intervals that account for seeds apart from items, weighting items by length
(long responses weigh more in every share), cells that are not done.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..fit.bootstrap import resample_counts
from ..io import atomic_write_json, atomic_write_jsonl_gz, check_owned, json_with_keys, read_json_dict, read_jsonl
from ..rundir import layout

FIRST_K = 5
ROLES_OUT = ("format", "content", "other", "all")
VERSION = 1


def done_cells(run_dir: Path) -> list[dict[str, Any]]:
    """The store's done cells (key, model, task, n, seed), in the store's order."""
    from ..rundir.store import Store

    path = layout.store_path(run_dir)
    if not path.exists():
        from ..io import InputError

        raise InputError(run_dir, "not a run directory (no study.sqlite): run `sftscale run` first")
    with Store(path, readonly=True) as st:
        return [{k: r[k] for k in ("key", "model", "task", "n", "seed")} for r in st.cells("done")]


def collect(run_dir: Path) -> Iterator[dict[str, Any]]:
    """One record per (cell, item) of the done cells that have a ``shift/`` directory."""
    run_dir = Path(run_dir)
    for c in done_cells(run_dir):
        sdir = layout.stage_dir(layout.cell_dir(run_dir, c["key"]), layout.SHIFT)
        meta = read_json_dict(sdir / layout.SHIFT_META) if (sdir / layout.SHIFT_META).exists() else {}
        if not meta.get("n_items"):
            continue
        for line in read_jsonl(sdir / layout.SHIFT_TOKENS):
            yield {"cell": c["key"], "model": c["model"], "task": c["task"], "n": int(c["n"]),
                   "seed": c["seed"], "checkpoint": meta.get("checkpoint"), **line}


def _ratio_ci(num: np.ndarray, den: np.ndarray, W: np.ndarray) -> dict[str, float | None]:
    """sum(num)/sum(den) with the percentile interval of the item-bootstrap weights W."""
    tot = float(den.sum())
    if tot <= 0:
        return {"mid": None, "lo": None, "hi": None}
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (W @ num) / (W @ den)
    reps = reps[np.isfinite(reps)]
    lo, hi = (np.percentile(reps, [2.5, 97.5]) if reps.size else (np.nan, np.nan))
    return {"mid": float(num.sum()) / tot, "lo": _f(lo), "hi": _f(hi)}


def _f(x: Any) -> float | None:
    return float(x) if np.isfinite(x) else None


def _group(records: list[dict[str, Any]], n_boot: int, seed: Any) -> list[dict[str, Any]]:
    """The entries of one (model, task, N): one per role (module docstring)."""
    items = sorted({r["id"] for r in records})
    pos = {i: k for k, i in enumerate(items)}
    n_items = len(items)
    # per item and role: tokens, unshifted, marginal, shifted, KL sum; first-k and rest too
    cols = ("tok", "uns", "mar", "shi", "kl", "tok1", "shi1", "kl1", "tok2", "shi2", "kl2")
    acc = {role: {c: np.zeros(n_items) for c in cols} for role in ROLES_OUT}
    for r in records:
        i = pos[r["id"]]
        for j, (rank, kl, role) in enumerate(zip(r["base_rank"], r["kl"], r["role"])):
            for key in (role, "all"):
                a = acc[key]
                a["tok"][i] += 1
                a["uns"][i] += rank == 1
                a["mar"][i] += 2 <= rank <= 3
                a["shi"][i] += rank > 3
                a["kl"][i] += kl
                part = "1" if j < FIRST_K else "2"
                a["tok" + part][i] += 1
                a["shi" + part][i] += rank > 3
                a["kl" + part][i] += kl
    W = resample_counts(np.random.default_rng(seed), n_boot, n_items)  # (n_boot, n_items) draws
    first = records[0]
    out = []
    for role in ROLES_OUT:
        a = acc[role]
        if a["tok"].sum() == 0:
            continue
        e: dict[str, Any] = {
            "model": first["model"], "task": first["task"], "n": first["n"], "role": role,
            "roles_by": sorted({r.get("roles_by", "generic") for r in records}),
            "n_cells": len({r["cell"] for r in records}), "n_items": n_items,
            "n_tokens": int(a["tok"].sum()),
            "unshifted": _ratio_ci(a["uns"], a["tok"], W), "marginal": _ratio_ci(a["mar"], a["tok"], W),
            "shifted": _ratio_ci(a["shi"], a["tok"], W), "mean_kl": _ratio_ci(a["kl"], a["tok"], W),
            "by_position": {
                "first": {"n_tokens": int(a["tok1"].sum()), "shifted": _ratio_ci(a["shi1"], a["tok1"], W),
                          "mean_kl": _ratio_ci(a["kl1"], a["tok1"], W)},
                "rest": {"n_tokens": int(a["tok2"].sum()), "shifted": _ratio_ci(a["shi2"], a["tok2"], W),
                         "mean_kl": _ratio_ci(a["kl2"], a["tok2"], W)}}}
        if role == "all":
            for r2 in ("format", "content"):
                e[f"{r2}_of_shifted"] = _ratio_ci(acc[r2]["shi"], a["shi"], W)
        out.append(e)
    return out


def summarise(records: list[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``shift.json``'s object from ``collect``'s records (module docstring)."""
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault((r["model"], r["task"], r["n"]), []).append(r)
    groups: list[dict[str, Any]] = []
    for (model, task, n), recs in sorted(by.items()):
        # seeded per group, so that a group's intervals do not depend on the other groups
        groups += _group(recs, n_boot, [seed, zlib.crc32(f"{model}\0{task}\0{n}".encode())])
    return {"version": VERSION, "kind": "sftscale token shift",
            "bands": {"unshifted": "base rank 1", "marginal": "base rank 2-3", "shifted": "base rank > 3"},
            "kl": "KL(finetuned || base) over the vocabulary, nats per token",
            "first_k": FIRST_K, "n_boot": n_boot, "interval": 0.95,
            "interval_method": "percentile bootstrap over items", "groups": groups}


def token_lines(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``DIR/shift/tokens.jsonl.gz``'s lines."""
    for r in records:
        yield {k: r.get(k) for k in ("cell", "model", "task", "n", "seed", "id", "checkpoint",
                                     "input_ids", "response_start", "base_rank", "kl", "role",
                                     "roles_by")}


def _tokens_ours(p: Path) -> bool:
    rows = read_jsonl(p)
    return not rows or {"cell", "input_ids", "response_start", "base_rank"} <= set(rows[0])


def write(run_dir: str | Path, n_boot: int = 1000, seed: int = 0) -> tuple[Path, Path, dict]:
    """Write ``DIR/shift.json`` and ``DIR/shift/tokens.jsonl.gz``; returns their paths and the
    summary. Files at those paths that sftscale did not write are an InputError."""
    run_dir = Path(run_dir)
    out, toks = layout.shift_path(run_dir), layout.shift_tokens_path(run_dir)
    check_owned(out, json_with_keys("kind", "groups"), "a token-shift summary")
    check_owned(toks, _tokens_ours, "a token-shift table")
    records = list(collect(run_dir))
    doc = summarise(records, n_boot=n_boot, seed=seed)
    toks.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl_gz(toks, token_lines(records))
    atomic_write_json(out, doc)
    return out, toks, doc


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """``DIR/shift.json`` (None when absent or not ours)."""
    p = layout.shift_path(run_dir)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "groups" in doc else None


__all__ = ["FIRST_K", "collect", "done_cells", "read", "summarise", "token_lines", "write"]
