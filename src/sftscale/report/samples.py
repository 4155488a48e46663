"""A few sample responses at each N, so a reader sees how answers change with more data.

For each (model, task) the cells of the first seed (and N = 0) are read from the store; the
first ``k`` item ids present in every cell are shown with the response and its format /
correctness flags (k-shot cells, ``fewshot:``, are not among them). Not handled: choosing
"interesting" items (the first k in test order are shown, so nothing is cherry-picked).
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

from ..io import read_jsonl
from ..rundir import layout
from ..schema import SampleRecord


def _samples(eval_files: dict) -> str | None:
    """The samples file among the eval stage's recorded files (path relative to the run dir)."""
    return next((p for p in eval_files if fnmatch(Path(p).name, layout.SAMPLES_GLOB)), None)


def sample_responses(run_dir: Path, k: int = 3, max_chars: int = 400) -> list[dict]:
    """[{model, task, items: [{id, question, gold?, by_n: [{n, response, format_ok, correct}]}]}]"""
    from ..rundir.store import Store

    sp = layout.store_path(run_dir)
    if not sp.exists():
        return []
    with Store(sp, readonly=True) as st:
        files = st.files()
        cells = [{**c, "samples": s} for c in st.cells("done")
                 if not json.loads(c["spec"] or "{}").get("kshot")  # not a k-shot cell
                 and (s := _samples(files.get(c["key"], {}).get(layout.EVAL, {})))]
    out = []
    for (model, task) in sorted({(c["model"], c["task"]) for c in cells}):
        cs = [c for c in cells if c["model"] == model and c["task"] == task]
        seed0 = min(c["seed"] for c in cs if c["seed"] is not None) if any(c["seed"] is not None for c in cs) else None
        by_n: dict[int, dict[str, SampleRecord]] = {}
        for c in sorted(cs, key=lambda c: (c["n"], c["seed"] if c["seed"] is not None else -1)):
            if c["n"] in by_n or (c["n"] != 0 and seed0 is not None and c["seed"] != seed0):
                continue
            p = run_dir / c["samples"]
            if p.exists():
                by_n[c["n"]] = {r["id"]: r for r in read_jsonl(p)}
        if not by_n:
            continue
        common = [i for i in next(iter(by_n.values())) if all(i in rows for rows in by_n.values())][:k]
        items = []
        for iid in common:
            first = by_n[min(by_n)][iid]
            items.append({"id": iid, "prompt": _clip(first.get("prompt", ""), max_chars),
                          "by_n": [{"n": n, "response": _clip(rows[iid].get("response", ""), max_chars),
                                    "format_ok": rows[iid].get("format_ok"), "correct": rows[iid].get("correct")}
                                   for n, rows in sorted(by_n.items())]})
        out.append({"model": model, "task": task, "items": items})
    return out


def _clip(s: str, n: int) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n] + " …"
