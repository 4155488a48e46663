"""What a finished cell left on disk, read back for the store: paths, hashes, metrics, items.

``eval_files(dir)`` finds an eval directory's newest results/samples pair; ``collect_outputs``
turns a cell's files into the row the store records; ``parse_results`` reads an lm-eval shaped
results file; ``check_values`` compares a done cell's values in the store with its files when
the store's checksum says they changed, and re-records them. Used by the runner (a cell just finished) and by the repair (a store rebuilt
from cell directories), so both record a cell identically.

Not handled: results files that are not lm-eval shaped JSON (their samples are aggregated
instead), several results files in one eval directory (the newest by name wins).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..io import sha256_file
from .cells import Cell

log = logging.getLogger("sftscale.study")


def collect_outputs(run_dir: Path, cell: Cell, train_meta: Path, results: Path,
                    samples: Path, ckpt_sha: str | None = None) -> dict[str, Any]:
    """Paths (relative to the run dir), hashes, metrics and per-item scores of a cell
    (``ckpt_sha``: the checkpoint's hash if already known, else computed here)."""
    from ..io import read_jsonl
    from .integrity import checkpoint_sha

    rows = read_jsonl(samples)
    metrics = parse_results(results, cell.task_name)
    if not metrics:  # results without lm-eval shaped numbers: aggregate the samples ourselves
        from ..tasks.base import mean_metrics
        metrics = mean_metrics(rows)
    items = []
    for i, r in enumerate(rows):
        fields = {k: v for k, v in r.items()
                  if k not in ("id", "correct", "format_ok") and isinstance(v, (bool, int, float))}
        items.append({"idx": i, "item_id": str(r.get("id", r.get("doc_id", i))),
                      "correct": r.get("correct"), "format_ok": r.get("format_ok"), "fields": fields})
    from .searchspec import store_summary

    try:
        search = store_summary(json.loads(Path(train_meta).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        search = None
    rel = lambda p: str(Path(p).resolve().relative_to(run_dir.resolve()))  # noqa: E731
    return {"train_meta": rel(train_meta), "results": rel(results), "samples": rel(samples),
            "train_meta_sha": sha256_file(train_meta), "results_sha": sha256_file(results),
            "samples_sha": sha256_file(samples), "n_items": len(rows),
            "ckpt_sha": ckpt_sha or checkpoint_sha(Path(train_meta).parent),
            "metrics": metrics, "items": items, **({"search": search} if search else {})}


def check_values(run_dir: Path, st: Any, row: dict[str, Any]) -> bool:
    """A done cell whose files passed ``check_done``: are the store's values still those
    recorded (``rows_sha``)? If not, they are compared with the cell's files and, where they
    differ, re-recorded from the files, with one warning naming the first difference. A
    cell recorded before ``rows_sha`` existed is compared with its files once. True when the
    store was corrected."""
    import types

    from .store import stored_form

    key = row["key"]
    now = st.rows_sha_now(key)
    if row.get("rows_sha") == now:
        return False
    cdir = run_dir / row["cell_dir"]
    fresh = collect_outputs(run_dir, types.SimpleNamespace(task_name=row["task_name"]),
                            run_dir / row["train_meta"], run_dir / row["results"],
                            run_dir / row["samples"], ckpt_sha=row.get("ckpt_sha"))
    metrics, items = fresh.pop("metrics"), fresh.pop("items")
    want, have = stored_form(metrics, items), st.stored_rows(key)
    why = _difference(have, want, row.get("n_items"), fresh["n_items"])
    if why is None:  # the same values (a store from before rows_sha): take its checksum now
        st.set_hash(key, "rows_sha", now)
        return False
    fresh.pop("search", None)
    for k in ("train_s", "eval_s", "wall_s", "overhead_s", "worker", "started_at"):
        fresh.pop(k, None)
    st.record_done(key, {**fresh, "finished_at": row.get("finished_at")}, metrics, items)
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
    if not d.is_dir():
        return None
    res = sorted(d.glob("results_*.json"))
    smp = sorted(d.glob("samples_*.jsonl"))
    return (res[-1], smp[-1]) if res and smp else None


__all__ = ["check_values", "collect_outputs", "eval_files", "parse_results"]
