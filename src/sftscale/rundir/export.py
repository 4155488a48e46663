"""Tables out of a run directory, for the fit and report stages and for other tools.

``load_tables(run_dir) -> (metrics_df, items_df)``:

- ``metrics_df``: one row per done cell and metric, columns
  ``model, task, metric, n, value, seed, n_items`` (long format; stderr metrics such as
  ``accuracy_stderr`` are rows too). N = 0 cells carry the study's first seed. A study with
  ``recipe_search`` adds ``search_<field>`` (the value chosen for the cell, per searched
  Recipe field), ``search_val`` (the chosen candidate's validation score of the task's primary
  metric), ``search_edges`` (``lr=low``: fields chosen at the grid's lowest or highest value,
  searchspec.grid_edges; empty when inside) and ``search_candidates`` (JSON: every candidate's
  values, score and validation loss); empty for N = 0 cells. Without a search the columns are
  absent. A study with k-shot cells (``fewshot:``) adds ``k`` (the cell's in-context examples;
  0 for the finetuning curve's cells) and ``fewshot_seed`` (its draw's seed; empty: the task's
  own), to both tables; without them the columns are absent. ``split_kshot`` separates the
  k > 0 rows (which the fit never puts on an N curve). A study with ``eval_tasks`` (the xeval
  stage) adds ``eval_task``: the task the row was evaluated on, the cell's own task for its
  own evaluation; rows of another task have the task ``<task>→<eval task>``
  (``layout.PAIR_SEP``), so that every (trained on, evaluated on) pair is a curve of its own
  for ``fit`` and ``report``, and their ``n_items`` are that task's. Without eval tasks the column is absent.
- ``items_df``: one row per done cell and evaluated item, columns
  ``model, task, n, seed, item_id, correct, format_ok`` plus one column per other scalar
  (bool/int/float) per-sample field the task reported (e.g. ``correct_flexible``, ``em``).
  ``correct``/``format_ok`` are pandas nullable booleans. With eval tasks: ``eval_task``
  too, and the rows of other tasks under ``<task>→<eval task>``.

``export(run_dir, fmt, out=None)`` writes the metrics table as csv, parquet or jsonl
(``DIR/export.<fmt>`` by default) and, beside it, the items table: ``DIR/items.<fmt>`` by
default, and named after ``out`` otherwise (``--out X/metrics.csv`` -> ``X/metrics.items.csv``),
so two studies exported into one folder under different names never share a file. It
never overwrites a file it did not write (a table whose columns are not the export's):
that, or an output that is a directory, is an InputError before anything is written.
``run_study`` writes ``export.csv`` and ``items.jsonl`` at the end of every run (a failure
there is logged as a warning; the store keeps the results).

Reading: the store is opened read-only (works in a read-only run directory; a damaged store
raises ``store.StoreDamaged``, an InputError naming ``sftscale run DIR --repair``); a file
that cannot be written is an InputError naming it (use ``--out`` elsewhere).

Not handled: failed or pending cells (only done cells have rows; ``sftscale status`` shows
the others), string per-sample fields (responses, extracted answers: read the cell's
samples file, whose path the store keeps).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import InputError, atomic_open, atomic_write_jsonl, check_owned, table_with_columns
from . import layout
from .store import Store

METRIC_COLUMNS = ["model", "task", "metric", "n", "value", "seed", "n_items"]
ITEM_COLUMNS = ["model", "task", "n", "seed", "item_id", "correct", "format_ok"]


def _store_path(run_dir: str | os.PathLike) -> Path:
    p = Path(run_dir)
    if p.is_file() and p.suffix == ".sqlite":
        return p
    sp = layout.store_path(p)
    if not sp.exists():
        raise InputError(p, f"not a run directory (no {layout.STORE})")
    return sp


def load_tables(run_dir: str | os.PathLike) -> tuple[Any, Any]:
    """(metrics_df, items_df) of the done cells; see the module docstring for columns."""
    import pandas as pd

    with Store(_store_path(run_dir), readonly=True) as st:
        cells = {r["key"]: r for r in st.cells("done")}
        kshot = _kshot_columns(cells)
        irows = []
        extra_cols: list[str] = []
        n_cross: dict[tuple[str, str], int] = {}  # (cell, eval task) -> items
        for it in st.iter_items():
            c = cells.get(it["cell"])
            if c is None:
                continue
            fields = dict(it["fields"])
            ev = fields.pop("eval_task", None)
            if ev is not None:
                n_cross[(it["cell"], ev)] = n_cross.get((it["cell"], ev), 0) + 1
            row = {"model": c["model"], "task": _pair(c["task"], ev), "n": c["n"], "seed": c["seed"],
                   "item_id": it["item_id"],
                   "correct": None if it["correct"] is None else bool(it["correct"]),
                   "format_ok": None if it["format_ok"] is None else bool(it["format_ok"]),
                   **kshot.get(it["cell"], {})}
            if ev is not None:
                row["eval_task"] = ev
            for k, v in fields.items():
                if k in row:
                    continue
                if k not in extra_cols:
                    extra_cols.append(k)
                row[k] = v
            irows.append(row)
        mrows = []
        for m in st.metrics():
            c = cells.get(m["cell"])
            if c is None:
                continue
            ev, metric = _split_metric(m["metric"])
            mrows.append({"model": c["model"], "task": _pair(c["task"], ev), "metric": metric,
                          "n": c["n"], "value": m["value"], "seed": c["seed"],
                          "n_items": c["n_items"] if ev is None else n_cross.get((m["cell"], ev)),
                          "eval_task": ev or c["task"], **kshot.get(m["cell"], {})})
    cross = any(r["eval_task"] != r["task"] for r in mrows)
    for r in mrows:
        if not cross:
            del r["eval_task"]
    for r in irows:
        if cross:
            r.setdefault("eval_task", r["task"])
    if cross and "eval_task" not in extra_cols:
        extra_cols.insert(0, "eval_task")
    extra = (["eval_task"] if cross else []) + _search_columns(cells, mrows)
    kcols = list(KSHOT_COLUMNS) if kshot else []
    metrics = pd.DataFrame(mrows, columns=METRIC_COLUMNS + kcols + extra)
    if len(metrics):
        metrics = metrics.sort_values(["model", "task", "metric", *kcols[:1], "n", "seed"],
                                      kind="stable")
        metrics = metrics.reset_index(drop=True)
    metrics = metrics.astype({"n": "int64", "seed": "int64", "n_items": "Int64", "value": "float64",
                              **({"k": "int64", "fewshot_seed": "Int64"} if kcols else {})})
    items = pd.DataFrame(irows, columns=ITEM_COLUMNS + kcols
                         + [c for c in extra_cols if c not in KSHOT_COLUMNS])
    items = items.astype({"n": "int64", "seed": "int64", "correct": "boolean", "format_ok": "boolean",
                          "item_id": "string",
                          **({"k": "int64", "fewshot_seed": "Int64"} if kcols else {})})
    return metrics, items


KSHOT_COLUMNS = ("k", "fewshot_seed")


def _kshot_columns(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cell key -> {k, fewshot_seed} from the cells' stored specs; {} when no cell is k-shot."""
    import json

    out = {}
    for key, c in cells.items():
        d = json.loads(c["spec"]) if c.get("spec") else {}
        out[key] = {"k": int(d.get("kshot") or 0), "fewshot_seed": d.get("fewshot_seed")}
    return out if any(v["k"] for v in out.values()) else {}


def split_kshot(df: Any) -> tuple[Any, Any]:
    """(the finetuning curve's rows, the k-shot rows) of a metrics or items table: rows with
    ``k`` > 0 are k-shot baselines; a table without a ``k`` column has none."""
    if df is None or "k" not in getattr(df, "columns", ()):
        return df, None
    k = df["k"].fillna(0).astype("int64")
    return df[k == 0].reset_index(drop=True), df[k > 0].reset_index(drop=True)


def _split_metric(name: str) -> tuple[str | None, str]:
    """(eval task label, metric) of an xeval metric ``xeval/<label>/<metric>``; else (None, name)."""
    head, sep, rest = name.partition("/")
    if head == layout.XEVAL and sep and "/" in rest:
        label, _, metric = rest.partition("/")
        return label, metric
    return None, name


def _pair(task: str, eval_task: str | None) -> str:
    """The task column of a row: the cell's task, or ``<task>→<eval task>`` for another one."""
    return task if eval_task is None else f"{task}{layout.PAIR_SEP}{eval_task}"


def _search_columns(cells: dict[str, dict[str, Any]], mrows: list[dict[str, Any]]) -> list[str]:
    """Add the recipe-search columns to ``mrows`` (in place; rows are in ``st.metrics()``
    order, keyed back to their cell by model/task/n/seed); their names, [] without a search."""
    import json

    by_cell = {(c["model"], c["task"], c["n"], c["seed"]): json.loads(c["search"])
               for c in cells.values() if c.get("search")}
    if not by_cell:
        return []
    fields = list(dict.fromkeys(k for s in by_cell.values() for k in (s.get("chosen") or {})))
    cols = [f"search_{k}" for k in fields] + ["search_val", "search_edges", "search_candidates"]
    for r in mrows:
        s = by_cell.get((r["model"], r["task"], r["n"], r["seed"]))
        chosen = (s or {}).get("chosen") or {}
        for k in fields:
            r[f"search_{k}"] = chosen.get(k)
        cands = (s or {}).get("candidates", [])
        r["search_val"] = next((c.get("score") for c in cands if c.get("values") == chosen), None)
        r["search_edges"] = (",".join(f"{k}={e}" for k, e in (s.get("edges") or {}).items())
                             if s else None)
        r["search_candidates"] = json.dumps(cands, sort_keys=True) if s else None
    return cols


def export(run_dir: str | os.PathLike, fmt: str = "csv", out: str | os.PathLike | None = None
           ) -> tuple[Path, Path]:
    """Write metrics (``out`` or DIR/export.<fmt>) and items beside it (DIR/items.<fmt>, or
    ``<out stem>.items.<fmt>``); refuses to overwrite a file it did not write."""
    if fmt not in ("csv", "parquet", "jsonl"):
        raise InputError(None, f"unknown format {fmt!r} (csv, parquet or jsonl)", field="format")
    metrics, items = load_tables(run_dir)
    mpath = Path(out) if out is not None else Path(run_dir) / layout.export_name(fmt)
    ipath = layout.side_path(mpath, "items", f".{fmt}") if out is not None else \
        Path(run_dir) / layout.items_name(fmt)
    flag = "--out" if out is not None else None
    check_owned(mpath, table_with_columns(*METRIC_COLUMNS), "a metrics table of sftscale "
                "export", field=flag)
    check_owned(ipath, table_with_columns(*ITEM_COLUMNS), "an items table of sftscale export "
                f"(the per-item side file of {mpath.name})", field=flag)
    for df, path in ((metrics, mpath), (items, ipath)):
        try:
            _write(df, path, fmt)
        except OSError as e:
            raise InputError(path, f"cannot write the table ({e.strerror or e}); choose another "
                             "file with --out") from None
    return mpath, ipath


def _write(df: Any, path: Path, fmt: str) -> None:
    if fmt == "csv":
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            df.to_csv(f, index=False)
    elif fmt == "parquet":
        with atomic_open(path, "wb") as f:
            df.to_parquet(f, index=False)
    else:
        atomic_write_jsonl(path, (_clean(r) for r in df.to_dict(orient="records")))


def _clean(row: dict) -> dict:
    import pandas as pd

    return {k: (None if v is pd.NA or (isinstance(v, float) and v != v) else v)
            for k, v in row.items()}


DEFAULT_EXPORTS = ((layout.EXPORT_CSV, "csv"), (layout.ITEMS_JSONL, "jsonl"))  # (metrics, items)


def write_default_exports(run_dir: str | os.PathLike) -> None:
    """``export.csv`` and ``items.jsonl`` in the run directory (what fit/report look for)."""
    tables = load_tables(run_dir)
    for df, (name, fmt) in zip(tables, DEFAULT_EXPORTS):
        _write(df, Path(run_dir) / name, fmt)


__all__ = ["DEFAULT_EXPORTS", "KSHOT_COLUMNS", "split_kshot", "ITEM_COLUMNS", "METRIC_COLUMNS", "export", "load_tables",
           "write_default_exports"]
