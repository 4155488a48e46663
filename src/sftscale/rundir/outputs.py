"""What a finished cell left on disk, read back for the store: paths, hashes, metrics, items.

``eval_files(dir)`` finds an eval directory's newest results/samples pair; ``collect_outputs``
turns a cell's files into the row the store records; ``parse_results`` reads an lm-eval shaped
results file. Used by the runner (a cell just finished) and by the repair (a store rebuilt
from cell directories), so both record a cell identically.

Not handled: results files that are not lm-eval shaped JSON (their samples are aggregated
instead), several results files in one eval directory (the newest by name wins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..grid.cells import Cell
from ..io import sha256_file


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
    from ..grid.searchspec import store_summary

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


__all__ = ["collect_outputs", "eval_files", "parse_results"]
