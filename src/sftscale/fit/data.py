"""Input tables for fitting and analysis: loading, validation, run-directory discovery.

Two plain tables, independent of the study runner:

(a) **long table** (CSV or DataFrame), one row per (model, task, metric, n[, seed]):
    ``model, task, metric, n, value[, seed, n_items]``. ``n`` is the number of finetuning
    examples (integer >= 0), ``value`` a finite number (a rate in [0, 1] for the
    saturating forms and the binomial bootstrap), ``seed`` the subset seed (rows without
    a seed column each count as their own seed), ``n_items`` the size of the test set the
    value was measured on (used by the parametric binomial bootstrap).

(b) **per-item table** (JSONL or CSV or DataFrame), one row per scored test item per cell:
    ``model, task, n, item_id[, seed]`` plus one column per per-sample metric, e.g.
    ``correct``, ``format_ok`` (bools or numbers). ``id`` is accepted for ``item_id``
    (the evaluate stage's sample records use ``id``). For IFEval per-instruction curves,
    rows may instead carry ``category`` and ``followed_strict`` (and ``followed_loose``).

Encoding: UTF-8, with or without a byte-order mark; any other encoding is an InputError
naming the file (``io.read_text_input``).

Rates: a metric named like a rate (``is_rate``: accuracy, format_rate, ``*acc*``, ``*_rate``,
``pass@k``, em, f1, exact_match, ... and their ``_stderr``) must have every value in [0, 1];
a value outside (a percentage such as 85, a negative number) is an InputError at its line;
so is a per-item score (``correct``, ``format_ok``, ``followed_*``) outside [0, 1].

Duplicates. Long table: two rows with the same (model, task, metric, n, seed) and different
``value`` or ``n_items`` are an InputError naming the file, both lines and the field; exact
copies are dropped (the first is kept) with one warning. Rows without a seed are never
duplicates of each other (each counts as its own seed). Per-item table: the same for
(model, task, n, seed, item_id[, sample]) and every other column. The warnings are in the
returned frame's ``attrs["input_warnings"]`` (``sftscale fit`` prints them and lists them
under ``input_warnings`` in fits.json).

A run directory is searched for ``export.csv`` and ``items.jsonl`` (or ``items.csv``);
if ``export.csv`` is missing and ``sftscale.rundir.export.load_tables(run_dir)`` exists, it
is called and may return ``(long_df, items_df)`` or a dict with keys ``long``/``items``.

k-shot baselines (rows whose ``k`` column is > 0: a study's ``fewshot:`` cells) are dropped
on reading, from both tables: they are not points of an N curve (the report draws them apart).

Not handled: wide tables (one column per N), Excel files, multi-line quoted CSV fields
(line numbers in errors then count records, not physical lines).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import InputError, read_jsonl, read_text_input
from ..rundir import layout
from ..rundir.export import load_tables, split_kshot

LONG_REQUIRED = ("model", "task", "metric", "n", "value")
ITEM_REQUIRED = ("model", "task", "n", "item_id")
#: aggregate metric name -> per-sample column
METRIC_TO_ITEM = {"accuracy": "correct", "format_rate": "format_ok"}


def _blank(v: Any) -> bool:
    """None, "", NaN, pd.NA (nullable pandas columns) all mean "no value"."""
    if v is None or (isinstance(v, str) and v == ""):
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists and other non-scalars
        return False


def _num(raw: Any, path, line, field, *, integer=False, lo=None) -> float:
    if isinstance(raw, bool):
        v = float(raw)
    else:
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise InputError(path, f"not a number: {raw!r}", line=line, field=field) from None
    if not math.isfinite(v):
        raise InputError(path, f"not a finite number: {raw!r}", line=line, field=field)
    if integer and v != int(v):
        raise InputError(path, f"not an integer: {raw!r}", line=line, field=field)
    if lo is not None and v < lo:
        raise InputError(path, f"must be >= {lo}: {raw!r}", line=line, field=field)
    return v


#: metric names that are rates (a share of items or instructions, in [0, 1]); a trailing
#: ``_stderr`` (its standard error) and an lm-eval filter suffix (``,flexible``) are ignored
_RATE = re.compile(r"(^|[_.-])(acc|accuracy|rate|em|f1|exact_match|correct|format_ok|bridge_ok|"
                   r"contains|followed|strict|loose)([_.-]|$)|^(pass@\d+|rate_)", re.IGNORECASE)


def is_rate(metric: str) -> bool:
    """Is ``metric`` a rate, whose values lie in [0, 1] (and whose targets in (0, 1))?"""
    name = str(metric).split(",")[0].removesuffix("_stderr")
    return bool(_RATE.search(name))


def _check_long_rows(rows: list[dict], path, lines: list[int]) -> pd.DataFrame:
    out = []
    rates: dict[str, bool] = {}
    for row, line in zip(rows, lines):
        for c in ("model", "task", "metric"):
            if _blank(row.get(c)):
                raise InputError(path, "empty value", line=line, field=c)
        metric, value = str(row["metric"]), _num(row.get("value"), path, line, "value")
        rec: dict[str, Any] = {"model": str(row["model"]), "task": str(row["task"]), "metric": metric,
                               "n": int(_num(row.get("n"), path, line, "n", integer=True, lo=0)),
                               "value": value, "_line": line}
        rate = rates.setdefault(metric, is_rate(metric))
        if rate and not 0.0 <= value <= 1.0:
            raise InputError(path, f"{rec['metric']!r} is a rate, so its values lie in [0, 1]; "
                             f"got {row.get('value')!r}"
                             + (" (a percentage? divide by 100)" if 1 < value <= 100 else ""),
                             line=line, field="value")
        if not _blank(row.get("seed")):
            rec["seed"] = str(row["seed"]).removesuffix(".0")
        if not _blank(row.get("n_items")):
            rec["n_items"] = int(_num(row["n_items"], path, line, "n_items", integer=True, lo=1))
        out.append(rec)
    if not out:
        raise InputError(path, "no data rows")
    df = pd.DataFrame(out)
    if "seed" not in df:
        df["seed"] = None
    if "n_items" not in df:
        df["n_items"] = None
    return _drop_duplicates(df, path, ["model", "task", "metric", "n", "seed"], "row",
                            seeded_only=True)


def _drop_duplicates(df: pd.DataFrame, path, key: list[str], what: str,
                     seeded_only: bool = False) -> pd.DataFrame:
    """``df`` without exact copies of a row (same ``key`` and same everything else), with one
    warning in ``attrs["input_warnings"]``; two rows with the same ``key`` that differ
    elsewhere are an InputError naming both lines and the first differing field. The line
    of each row is its ``_line`` column (dropped from the result when it was added here)."""
    df.attrs.setdefault("input_warnings", [])
    sub = df[df["seed"].notna()] if seeded_only else df
    if len(sub) < 2:
        return df
    dup = sub.duplicated(subset=key, keep=False).to_numpy()
    if not dup.any():
        return df
    rest = [c for c in df.columns if c not in key and c != "_line"]
    cand = sub[dup]
    first: dict[tuple, int] = {}
    drop: list[Any] = []
    for idx, k, vals in zip(cand.index, cand[key].itertuples(index=False, name=None),
                            cand[rest].itertuples(index=False, name=None)):
        if k not in first:
            first[k] = idx
            continue
        ref = df.loc[first[k], rest].tolist()
        for c, a, b in zip(rest, ref, vals):
            if not (_same(a, b)):
                la, lb = df.at[first[k], "_line"], df.at[idx, "_line"]
                raise InputError(path, f"lines {la} and {lb} are the same {what} ("
                                 + ", ".join(f"{c} {v}" for c, v in zip(key, k))
                                 + f") with different {c}: {_show(a)} and {_show(b)}; keep one of them",
                                 line=lb, field=c)
        drop.append(idx)
    out = df.drop(index=drop).reset_index(drop=True)
    la = int(df.at[drop[0], "_line"])
    out.attrs["input_warnings"] = df.attrs["input_warnings"] + [
        f"{path if path is not None else 'the table'}: {len(drop)} exact duplicate {what}(s) "
        f"dropped (the same {', '.join(key)} and values as an earlier {what}; e.g. line {la})"]
    return out


def _show(v: Any) -> str:
    if _blank(v):
        return "(empty)"
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return f"{float(v):g}"
    return repr(v)


def _same(a: Any, b: Any) -> bool:
    if _blank(a) and _blank(b):
        return True
    num = (int, float, np.integer, np.floating)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return str(a) == str(b)


def _long_frame_fast(df: pd.DataFrame) -> pd.DataFrame | None:
    """Vectorised validation of a clean long DataFrame (a table already read, a run
    directory's); None sends it to the row-by-row path, which names the first bad row."""
    if len(df) == 0 or any(df[c].isna().any() for c in ("model", "task", "metric", "n", "value")):
        return None
    n = pd.to_numeric(df["n"], errors="coerce")
    v = pd.to_numeric(df["value"], errors="coerce")
    if n.isna().any() or (n < 0).any() or (n != n.round()).any() or not np.isfinite(v).all():
        return None
    if any(str(x) == "" for x in pd.unique(df[["model", "task", "metric"]].to_numpy().ravel())):
        return None
    metric = df["metric"].astype(str)
    rate = metric.map({m: is_rate(m) for m in pd.unique(metric)}).to_numpy(bool)
    if ((v[rate] < 0) | (v[rate] > 1)).any():
        return None
    out = pd.DataFrame({"model": df["model"].astype(str), "task": df["task"].astype(str),
                        "metric": metric, "n": n.astype("int64"), "value": v.astype(float),
                        "_line": np.arange(2, len(df) + 2)})
    if "seed" in df.columns:
        out["seed"] = [None if _blank(x) else str(x).removesuffix(".0") for x in df["seed"]]
    else:
        out["seed"] = None
    if "n_items" in df.columns and df["n_items"].notna().any():
        k = pd.to_numeric(df["n_items"], errors="coerce")
        given = df["n_items"].notna()
        if k[given].isna().any() or (k[given] < 1).any() or (k[given] != k[given].round()).any():
            return None
        out["n_items"] = [int(x) if g else None for x, g in zip(k, given)]
    else:
        out["n_items"] = None
    return out.reset_index(drop=True)


def load_long(src: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read and validate a long table; bad input raises InputError with line and field."""
    if isinstance(src, pd.DataFrame):
        src = split_kshot(src)[0]
        missing = [c for c in LONG_REQUIRED if c not in src.columns]
        if missing:
            raise InputError(None, "missing column", field=missing[0])
        fast = _long_frame_fast(src)
        if fast is not None:
            return _drop_duplicates(fast, None, ["model", "task", "metric", "n", "seed"], "row",
                                    seeded_only=True)
        rows = src.to_dict("records")
        return _check_long_rows(rows, None, [i + 2 for i in range(len(rows))])
    path = Path(src)
    _check_file(path, "a long CSV table or a run directory")
    reader = csv.DictReader(io.StringIO(read_text_input(path), newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for c in LONG_REQUIRED:
        if c not in header:
            raise InputError(path, f"missing column (header has: {', '.join(header) or 'nothing'})",
                             line=1, field=c)
    rows, lines = [], []
    for row in reader:
        if None in row:
            raise InputError(path, "more fields than the header", line=reader.line_num)
        if all(v in (None, "") for v in row.values()) or _kshot_row(row):
            continue
        rows.append(row)
        lines.append(reader.line_num)
    return _check_long_rows(rows, path, lines)


def _kshot_row(row: dict) -> bool:
    """A k-shot baseline's row (``k`` > 0, rundir.export): not a point of any N curve."""
    k = row.get("k")
    return k not in (None, "", "0", 0, False) and str(k).strip() not in ("", "0", "0.0", "nan")


def _check_file(path: Path, what: str) -> None:
    """InputError unless ``path`` is a non-empty regular file (saying which it is not)."""
    if not path.exists():
        raise InputError(path, f"no such file (expected {what})")
    if path.is_dir():
        raise InputError(path, f"is a directory (expected {what})")
    if not path.is_file():
        raise InputError(path, f"not a regular file (a device, pipe or socket; expected {what})")
    if path.stat().st_size == 0:
        raise InputError(path, f"empty file (expected {what})")


def match_items(long_df: pd.DataFrame, items_df: pd.DataFrame | None, source: Any = None
                ) -> tuple[pd.DataFrame | None, list[str]]:
    """Per-item rows restricted to the long table's (model, task) curves, and warnings that
    name the curves: items matching no curve (dropped), curves without items, and curves
    whose metric has no per-item column (``METRIC_TO_ITEM``): these get no paired bootstrap.
    ``source`` names the items in the warnings. None when no item row matches a curve."""
    if items_df is None:
        return None, []
    where = f"per-item scores{f' ({source})' if source is not None else ''}"
    curves = set(zip(long_df["model"], long_df["task"]))
    keys = list(zip(items_df["model"], items_df["task"]))
    out = []
    extra = sorted(set(keys) - curves)
    if extra:
        out.append(f"{where} for {_names(extra)} match no curve of the table: ignored")
    kept = items_df[[k in curves for k in keys]].reset_index(drop=True)
    missing = sorted(curves - set(keys))
    if missing:
        out.append(f"no {where} for {_names(missing)}: their intervals use the binomial or "
                   "seed bootstrap")
    for metric, col in METRIC_TO_ITEM.items():
        rows = long_df[long_df["metric"] == metric]
        lacking = [k for k in sorted(set(zip(rows["model"], rows["task"])) - set(missing))
                   if col not in kept.columns
                   or kept.loc[(kept["model"] == k[0]) & (kept["task"] == k[1]), col].isna().all()]
        if lacking:
            out.append(f"{where} have no '{col}' values, so the {metric} curves of "
                       f"{_names(lacking)} use the binomial or seed bootstrap")
    return (kept if len(kept) else None), out


def _names(keys: list[tuple]) -> str:
    shown = ", ".join("/".join(map(str, k)) for k in keys[:6])
    return shown + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


#: per-item columns that are scores of one item, in [0, 1]
_ITEM_RATES = ("correct", "format_ok", "followed_strict", "followed_loose")


def _check_item_rows(rows: list[dict], path, lines: list[int]) -> pd.DataFrame:
    out = []
    for row, line in zip(rows, lines):
        if _blank(row.get("item_id")) and not _blank(row.get("id")):
            row = {**row, "item_id": row["id"]}
        for c in ITEM_REQUIRED:
            if _blank(row.get(c)):
                raise InputError(path, "missing value", line=line, field=c)
        rec: dict[str, Any] = {"model": str(row["model"]), "task": str(row["task"]),
               "n": int(_num(row["n"], path, line, "n", integer=True, lo=0)),
               "item_id": str(row["item_id"]),
               "seed": "0" if _blank(row.get("seed")) else str(row["seed"]).removesuffix(".0"),
               "_line": line}
        for k, v in row.items():
            if k in rec or k in ("id", "_line") or _blank(v):
                continue
            if k == "category":
                rec[k] = str(v)
            elif isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
                rec[k] = float(v)
            elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
                rec[k] = 1.0 if v.strip().lower() == "true" else 0.0
            elif isinstance(v, str) and k in _ITEM_RATES:
                rec[k] = _num(v, path, line, k)
            if k in _ITEM_RATES and k in rec and not 0.0 <= rec[k] <= 1.0:
                raise InputError(path, f"a per-item score lies in [0, 1] (1 = right), got {v!r}",
                                 line=line, field=k)
        out.append(rec)
    if not out:
        raise InputError(path, "no item rows")
    return pd.DataFrame(out)


def _items_frame_fast(df: pd.DataFrame) -> pd.DataFrame | None:
    """Vectorised validation of a clean DataFrame; None sends it to the row-by-row path
    (which names the first bad row and field)."""
    if "item_id" not in df.columns and "id" in df.columns:
        df = df.rename(columns={"id": "item_id"})
    if len(df) == 0 or any(c not in df.columns or df[c].isna().any() for c in ITEM_REQUIRED):
        return None
    n = pd.to_numeric(df["n"], errors="coerce")
    if n.isna().any() or (n < 0).any() or (n != n.round()).any():
        return None
    out = pd.DataFrame({"model": df["model"].astype(str), "task": df["task"].astype(str),
                        "n": n.astype("int64"), "item_id": df["item_id"].astype(str),
                        "_line": np.arange(2, len(df) + 2)})
    seed = df["seed"] if "seed" in df.columns else pd.Series("0", index=df.index)
    out["seed"] = ["0" if _blank(v) else str(v).removesuffix(".0") for v in seed]
    for k in df.columns:
        if k in out.columns or k == "id":
            continue
        col = df[k]
        if k == "category":
            out[k] = col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            out[k] = col.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            if k in _ITEM_RATES and ((out[k] < 0) | (out[k] > 1)).any():
                return None  # the row-by-row path names the row
        elif k in _ITEM_RATES:
            return None  # strings or mixed objects: validate row by row
    return out.reset_index(drop=True)


def load_items(src: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a per-item table (JSONL or CSV or DataFrame), validated like ``load_long``."""
    return _unique_items(_load_items(src), None if isinstance(src, pd.DataFrame) else Path(src))


def _unique_items(df: pd.DataFrame, path) -> pd.DataFrame:
    key = ["model", "task", "n", "seed", "item_id"] + (["sample"] if "sample" in df.columns else [])
    out = _drop_duplicates(df, path, key, "item row")
    warnings = out.attrs["input_warnings"]
    out = out.drop(columns="_line")
    out.attrs["input_warnings"] = warnings
    return out


def _load_items(src: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        src = split_kshot(src)[0]
        fast = _items_frame_fast(src)
        if fast is not None:
            return fast
        rows = src.to_dict("records")
        return _check_item_rows(rows, None, [i + 2 for i in range(len(rows))])
    path = Path(src)
    _check_file(path, "a per-item JSONL or CSV file")
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(read_text_input(path), newline=""))
        rows, lines = [], []
        for row in reader:
            if not _kshot_row(row):
                rows.append(row)
                lines.append(reader.line_num)
        return _check_item_rows(rows, path, lines)
    numbered = [(i, r) for i, r in read_jsonl(path, numbered=True)
                if not (isinstance(r, dict) and _kshot_row(r))]
    return _check_item_rows([r for _, r in numbered], path, [i for i, _ in numbered])


def load_inputs(src: str | Path, items: str | Path | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame | None, Path]:
    """(long table, per-item table or None, directory for outputs) from a CSV or run dir."""
    path = Path(src)
    items_df = load_items(items) if items is not None else None
    if path.is_dir():
        export = path / layout.EXPORT_CSV
        if export.is_file():
            long_df = load_long(export)
        else:
            long_df, maybe_items = _runner_tables(path)
            if items_df is None and maybe_items is not None:
                items_df = load_items(maybe_items)
        if items_df is None:
            for name in (layout.ITEMS_JSONL, layout.items_name("csv")):
                if (path / name).is_file():
                    items_df = load_items(path / name)
                    break
        return long_df, items_df, path
    return load_long(path), items_df, path.parent


def _runner_tables(run_dir: Path) -> tuple[pd.DataFrame, Any]:
    long_df, items = load_tables(run_dir)
    if long_df is None or len(long_df) == 0:
        raise InputError(run_dir, "the study has no finished cells yet; see `sftscale status` for its cells")
    return load_long(pd.DataFrame(long_df)), (pd.DataFrame(items) if items is not None else None)


def explode_ifeval(samples: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Per-sample IFEval records -> one row per instruction with ``category`` and
    ``followed_strict`` / ``followed_loose``.

    Each record needs ``follow_instruction_list_strict`` (list of bools), optionally
    ``..._loose``, and the instruction ids as ``instruction_id_list`` (or in ``target``
    as a list or a dict with that key). The category is the id's prefix before ``:``.
    """
    recs = samples.to_dict("records") if isinstance(samples, pd.DataFrame) else list(samples)
    out = []
    for r in recs:
        ids = r.get("instruction_id_list")
        tgt = r.get("target")
        if ids is None and isinstance(tgt, dict):
            ids = tgt.get("instruction_id_list")
        elif ids is None and isinstance(tgt, (list, tuple)) and tgt:
            ids = tgt[0] if isinstance(tgt[0], (list, tuple)) else tgt  # (ids, kwargs) or ids
        strict = r.get("follow_instruction_list_strict")
        if ids is None or strict is None:
            continue
        loose = r.get("follow_instruction_list_loose") or [None] * len(strict)
        for j, (iid, s, lo) in enumerate(zip(ids, strict, loose)):
            row = {k: r.get(k) for k in ("model", "task", "n", "seed")}
            row["item_id"] = f"{r.get('item_id', r.get('id'))}#{j}"
            row["category"] = str(iid).split(":")[0]
            row["followed_strict"] = float(bool(s))
            if lo is not None:
                row["followed_loose"] = float(bool(lo))
            out.append(row)
    return pd.DataFrame(out)


__all__ = ["ITEM_REQUIRED", "LONG_REQUIRED", "METRIC_TO_ITEM", "explode_ifeval", "load_inputs",
           "load_items", "load_long", "match_items"]
