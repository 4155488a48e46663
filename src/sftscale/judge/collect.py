"""The wrong responses of a run directory's finished cells, with what the judge is shown.

``wrong_responses(run_dir)`` -> ``(responses, totals)``. It reads the store (read-only) for
the done cells and their recorded eval files, then each cell's samples file: every record
whose ``correct`` is not true is one response to judge, with the prompt the model saw, its
response, the rule-based ``format_ok`` and the toy world's truth (``truth.truth``).
``totals[(model, task, n, seed)]`` is the number of evaluated records of that cell.

The reference answer comes from the task itself: ``get_task(task, **task_options)`` with the
options recorded in the cell's results file, its ``test_items()`` by id; the item's reference
completion when it has one (a worked solution), else its target. A task that cannot be built
here (a plug-in not installed) gives an empty reference, and the judge is told so.

Not handled: cells that are not done (``sftscale status`` shows them), samples files that
the store does not record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..io import read_jsonl
from ..rundir import layout
from .truth import truth


@dataclass
class Wrong:
    cell: str
    model: str
    task: str
    n: int
    seed: int | None
    item_id: str
    prompt: str
    response: str
    format_ok: bool | None
    reference: str = ""
    truth_coarse: str | None = None
    truth_fine: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def group(self) -> tuple[str, str, int]:
        return self.model, self.task, self.n


def _pick(files: dict, pattern: str) -> str | None:
    return next((p for p in sorted(files) if fnmatch(Path(p).name, pattern)), None)


def _reference(item: Any) -> str:
    if isinstance(item.completion, str) and item.completion.strip():
        return item.completion
    t = item.target
    if isinstance(t, list):
        return " / ".join(map(str, t))
    return t if isinstance(t, str) else json.dumps(t, default=str)[:1000]


_REFS: dict[str, dict[str, str]] = {}


def references(task: str, options: dict) -> dict[str, str]:
    """item id -> reference text of a task built with ``options`` ({} when it cannot be built)."""
    key = json.dumps([task, options], sort_keys=True, default=str)
    if key not in _REFS:
        from ..tasks import get_task

        try:
            _REFS[key] = {it.id: _reference(it) for it in get_task(task, **options).test_items()}
        except Exception:  # noqa: BLE001 - a task we cannot build here: the judge sees no reference
            _REFS[key] = {}
    return _REFS[key]


def _task_options(results_path: Path, task: str) -> dict:
    try:
        doc = json.loads(results_path.read_text(encoding="utf-8"))
        opts = doc.get("configs", {}).get(task, {}).get("task_options") or {}
        return dict(opts) if isinstance(opts, dict) else {}
    except (OSError, ValueError):
        return {}


def wrong_responses(run_dir: str | Path) -> tuple[list[Wrong], dict[tuple, int]]:
    from ..rundir.store import Store

    run_dir = Path(run_dir)
    with Store(layout.store_path(run_dir), readonly=True) as st:
        files = st.files()
        cells = st.cells("done")
    out: list[Wrong] = []
    totals: dict[tuple, int] = {}
    for c in sorted(cells, key=lambda c: (c["model"], c["task"], c["n"], c["seed"] or 0)):
        ev = files.get(c["key"], {}).get(layout.EVAL, {})
        sp, rp = _pick(ev, layout.SAMPLES_GLOB), _pick(ev, layout.RESULTS_GLOB)
        if sp is None or not (run_dir / sp).exists():
            continue
        refs = references(c["task"], _task_options(run_dir / rp, c["task"])) if rp else {}
        recs = list(read_jsonl(run_dir / sp))
        totals[(c["model"], c["task"], c["n"], c["seed"])] = len(recs)
        for r in recs:
            if r.get("correct") is True:
                continue
            iid = str(r.get("id")) + (f"#{r['sample']}" if "sample" in r else "")
            ref = refs.get(str(r.get("id")), "")
            tc, tf = truth(c["task"], r, ref)
            out.append(Wrong(cell=c["key"], model=c["model"], task=c["task"], n=int(c["n"]),
                             seed=c["seed"], item_id=iid, prompt=str(r.get("prompt", "")),
                             response=str(r.get("response", "")), format_ok=r.get("format_ok"),
                             reference=ref, truth_coarse=tc, truth_fine=tf))
    return out, totals


__all__ = ["Wrong", "references", "wrong_responses"]
