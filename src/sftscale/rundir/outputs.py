"""What a finished cell left on disk, read back for the store: files, hashes, metrics, items.

``collect_outputs`` walks the stage list: each stage's hashed files (with their sha256) and
what its ``collect`` adds (metrics, items, the recipe search's summary) become the row the
store records. Used by the runner (a cell just finished) and by the repair (a store rebuilt
from cell directories), so both record a cell identically. ``check_values`` compares a done
cell's values in the store with its files when the store's checksum (``rows_sha``) says they
changed, and re-records them from the files (called by the runner after
``integrity.verify_done``).

The first two stages' readers live here too: ``train_record`` / ``train_seconds`` (the train
stage's ``train_meta.json``), ``eval_record`` / ``eval_seconds`` / ``eval_files`` /
``parse_results`` (an lm-eval shaped results file and its samples).

Not handled: results files that are not lm-eval shaped JSON (their samples are aggregated
instead), several results files in one eval directory (the newest by name wins).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..grid.cells import Cell
from ..io import InputError, read_json_dict
from . import layout
from .stagespec import StageSpec, hash_stage

log = logging.getLogger("sftscale.study")


class StageUnreadable(RuntimeError):
    """A complete stage directory whose files its ``collect`` cannot read."""

    def __init__(self, stage: str, error: BaseException):
        self.stage = stage
        super().__init__(f"the {stage} stage's files are unreadable ({type(error).__name__}: "
                         f"{error})")


def collect_outputs(run_dir: Path, cell: Cell, stages: Sequence[StageSpec],
                    hashes: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """``files`` ([stage, path relative to the run dir, sha256] of every hashed file),
    ``metrics``, ``items``, ``n_items`` and ``search`` of a cell whose stages are all complete
    (``hashes``: per stage, the hashes already computed, relative to the stage directory)."""
    cdir = layout.cell_dir(run_dir, cell.key)
    files: list[list[Any]] = []
    for spec in stages:
        sdir = spec.dir_in(cdir)
        h = (hashes or {}).get(spec.name)
        if h is None:
            h = hash_stage(spec, sdir)
        files += [[spec.name, layout.rel(run_dir, sdir / rel), sha] for rel, sha in h.items()]
    return {"files": files, **collect_values(cdir, cell, stages)}


def collect_values(cdir: Path, cell: Cell, stages: Sequence[StageSpec]) -> dict[str, Any]:
    """``metrics``, ``items``, ``n_items`` and ``search`` of a cell whose stages are all
    complete (what each stage's ``collect`` adds; no hashing)."""
    rec: dict[str, Any] = {"metrics": {}, "items": [], "n_items": None}
    by: dict[str, str] = {}
    extra: list[dict[str, Any]] = []
    for spec in stages:
        sdir = spec.dir_in(cdir)
        try:
            part = spec.collect(cell, sdir) if spec.collect is not None else {}
        except (InputError, OSError, ValueError) as e:
            raise StageUnreadable(spec.name, e) from e
        for k, v in part.items():
            if k == "metrics":
                clash = sorted(set(v) & set(rec["metrics"]))
                if clash:
                    raise RuntimeError(f"stage {spec.name!r} reports metric(s) {clash} that stage "
                                       f"{by[clash[0]]!r} reported")
                rec["metrics"].update(v)
                by.update({m: spec.name for m in v})
            elif k == "items" and v:
                if rec["items"]:
                    raise RuntimeError(f"stage {spec.name!r} reports items; another stage did")
                rec["items"] = v
            elif k == "xitems":  # items of other tasks (xeval): after the cell's own
                extra.extend(v or ())
            elif v is not None:
                rec[k] = v
    base = len(rec["items"])
    rec["items"] = list(rec["items"]) + [{**it, "idx": base + i} for i, it in enumerate(extra)]
    return rec


def check_values(run_dir: Path, st: Any, row: dict[str, Any],
                 stages: Sequence[StageSpec]) -> bool:
    """A done cell whose files passed ``integrity.check_done``: are the store's values still
    those recorded (``rows_sha``)? If not, they are compared with what the cell's files give
    (``collect_values``) and, where they differ, re-recorded from the files (its recorded
    files and timings kept), with one warning naming the first difference. A cell recorded
    before ``rows_sha`` existed is compared with its files once. True when the store was
    corrected."""
    from .store import stored_form

    key = row["key"]
    now = st.rows_sha_now(key)
    if row.get("rows_sha") == now:
        return False
    cell_dir = row.get("cell_dir") or layout.cell_rel(key)
    cdir = run_dir / cell_dir
    try:
        cell = Cell.from_dict(json.loads(row["spec"]))
        fresh = collect_values(cdir, cell, stages)
    except (StageUnreadable, RuntimeError, TypeError, ValueError) as e:
        log.warning("%s: the store's values changed since they were recorded, and the cell's "
                    "files cannot be read back to check them (%s)", key, e)
        return False
    metrics, items = fresh.pop("metrics"), fresh.pop("items")
    want, have = stored_form(metrics, items), st.stored_rows(key)
    why = _difference(have, want, row.get("n_items"), fresh.get("n_items"))
    if why is None:  # the same values (a store from before rows_sha): take its checksum now
        st.set_rows_sha(key, now)
        return False
    files = [[stage, path, sha] for stage, fs in st.files(key).get(key, {}).items()
             for path, sha in fs.items()]
    st.record_done(key, {"cell_dir": cell_dir, "n_items": fresh.get("n_items"), "files": files,
                         "finished_at": row.get("finished_at")}, metrics, items)
    log.warning("%s: the store's values differ from the cell's files (%s); re-recorded them "
                "from the files in %s", key, why, cdir)
    return True


def _difference(have: tuple[dict, list], want: tuple[dict, list], n_have: Any, n_want: Any
                ) -> str | None:
    """The first difference between the store's rows and the files' (None: the same)."""
    (hm, hi), (wm, wi) = have, want
    for m in sorted(set(hm) | set(wm)):
        if hm.get(m) != wm.get(m):
            return f"{m}: {hm.get(m)!r} in the store, {wm.get(m)!r} in the files"
    if n_have != n_want:
        return f"n_items: {n_have!r} in the store, {n_want!r} in the files"
    if len(hi) != len(wi):
        return f"{len(hi)} item rows in the store, {len(wi)} in the samples file"
    for a, b in zip(hi, wi):
        if tuple(a) != tuple(b):
            return f"item {b[1]!r} (row {b[0]}) differs"
    return None


# --- the train stage's files ---------------------------------------------------------------

def train_record(cell: Cell, train_dir: Path) -> dict[str, Any]:
    """What ``train/`` adds to the cell's record: a recipe search's summary."""
    from ..grid.searchspec import store_summary

    search = store_summary(read_json_dict(train_dir / layout.TRAIN_META))
    return {"search": search} if search else {}


def train_seconds(train_dir: Path) -> float | None:
    """Training seconds as ``train_meta.json`` recorded them (None for an untrained N = 0 cell)."""
    return _float(read_json_dict(train_dir / layout.TRAIN_META).get("wall_s"))


# --- the eval stage's files ----------------------------------------------------------------

def eval_record(cell: Cell, eval_dir: Path) -> dict[str, Any]:
    """What ``eval/`` adds: metrics (the results file's, else the samples' means), items, n."""
    metrics, items = read_eval(eval_dir, cell.task_name)
    return {"metrics": metrics, "items": items, "n_items": len(items)}


def read_eval(eval_dir: Path, task_name: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, item rows) of one evaluation directory (a results and a samples file): the
    results file's numbers for ``task_name``, else the samples' means; per sample ``idx``,
    ``item_id``, ``correct``, ``format_ok`` and its other scalar fields. Shared by the eval
    and xeval stages' records."""
    from ..io import read_jsonl

    results, samples = eval_files(eval_dir) or (None, None)
    if results is None or samples is None:
        raise RuntimeError(f"{eval_dir}: no results_*.json and samples_*.jsonl")
    rows = read_jsonl(samples)
    metrics = parse_results(results, task_name)
    if not metrics:  # results without lm-eval shaped numbers: aggregate the samples ourselves
        from ..tasks.base import mean_metrics
        metrics = mean_metrics(rows)
    items = []
    for i, r in enumerate(rows):
        fields = {k: v for k, v in r.items()
                  if k not in ("id", "correct", "format_ok") and isinstance(v, (bool, int, float))}
        items.append({"idx": i, "item_id": str(r.get("id", r.get("doc_id", i))),
                      "correct": r.get("correct"), "format_ok": r.get("format_ok"), "fields": fields})
    return metrics, items


def eval_seconds(eval_dir: Path) -> float | None:
    """Evaluation seconds as the results file recorded them."""
    files = eval_files(eval_dir)
    return _float(read_json_dict(files[0]).get("total_evaluation_time_seconds")) if files else None


def parse_results(path: Path, task_name: str) -> dict[str, float]:
    """Numbers of an lm-eval shaped results JSON: ``{"results": {task: {"acc,none": x}}}``."""
    doc = json.loads(Path(path).read_text())
    res = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(res, dict) or not res:
        return {}
    block = res.get(task_name)
    if not isinstance(block, dict):
        block = next((v for v in res.values() if isinstance(v, dict)), {})
    out: dict[str, float] = {}
    for k, v in block.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        name, _, filt = k.partition(",")
        out[name if filt in ("", "none") else f"{name},{filt}"] = float(v)
    return out


def eval_files(d: Path) -> tuple[Path, Path] | None:
    """The newest (results, samples) pair of an eval directory; None when incomplete."""
    if not d.is_dir():
        return None
    res = sorted(d.glob(layout.RESULTS_GLOB))
    smp = sorted(d.glob(layout.SAMPLES_GLOB))
    return (res[-1], smp[-1]) if res and smp else None


def _float(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


__all__ = ["StageUnreadable", "check_values", "collect_outputs", "collect_values", "eval_files",
           "eval_record", "eval_seconds", "parse_results", "read_eval", "train_record", "train_seconds"]
