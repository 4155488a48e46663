"""``judge_run_dir``: label every wrong response of a run directory, write labels and shares.

1. the wrong responses of the done cells (``collect.wrong_responses``), and optionally a
   hand-labelled check set (``load_check_set``: JSONL of ``{id, task, question, reference,
   response, fine}``);
2. one request each, keyed by (content sha, judge identity, ``PROMPT_VERSION``); keys already
   in ``DIR/judge/cache.jsonl`` are not sent. Before sending it says how many it will send
   and how many are cached;
3. answers are parsed (``prompt.parse``) and cached as they arrive, so Ctrl-C loses at most
   the requests in flight and a rerun asks only what is missing;
4. ``DIR/judge/labels.jsonl`` (one line per judged response: cell, model, task, n, seed,
   item id, label, fine, reason, judge, prompt version, status ``ok``/``unparsed``/``failed``,
   error, truth) and ``DIR/judge.json`` (per model x task x N: the share and rate of each
   label and class with bootstrap intervals, the rule-based split beside it; agreement with
   the toy world's truth and with the check set), both written atomically at the end.

``limit``: at most that many wrong responses per cell (``per_cell``: the first in test order,
the cell's item count scaled by the share kept), for a quick look with a slow judge.

Not handled: judging correct responses, more than one sample per item distinguished in the
shares (samples count as items), judging while a study is running (it reads the done cells
at the start).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from ..io import InputError, atomic_write_json, atomic_write_jsonl, sha256_json
from ..rundir import layout
from .cache import JudgeCache, cache_key
from .collect import Wrong, wrong_responses
from .prompt import PROMPT_VERSION, messages, parse
from .stats import agreement, label_shares
from .taxonomy import COARSE, taxonomy

LABELS, CACHE = layout.JUDGE_LABELS, layout.JUDGE_CACHE
judge_dir, judge_json_path = layout.judge_dir, layout.judge_json_path


def load_check_set(path: str | os.PathLike) -> list[Wrong]:
    """A hand-labelled set (JSONL: id, task, question, reference, response, fine) as Wrongs
    whose truth is the hand label; an unknown label is an InputError naming its line."""
    from ..io import read_jsonl

    out = []
    for i, r in enumerate(read_jsonl(path), 1):
        for k in ("id", "task", "question", "response", "fine"):
            if not isinstance(r.get(k), str):
                raise InputError(path, f"missing string field {k!r}", line=i, field=k)
        tax = taxonomy(r["task"])
        if r["fine"] not in tax.fine:
            raise InputError(path, f"label {r['fine']!r} is not one of {', '.join(tax.fine)}",
                             line=i, field="fine")
        out.append(Wrong(cell="check", model="check", task=r["task"], n=-1, seed=None, item_id=r["id"],
                         prompt=f"Question: {r['question']}\nAnswer:", response=r["response"],
                         format_ok=None, reference=str(r.get("reference", "")),
                         truth_coarse=tax.coarse(r["fine"]), truth_fine=r["fine"]))
    return out


def per_cell(wrong: list[Wrong], totals: dict[tuple, int], limit: int) -> tuple[list[Wrong], dict[tuple, int]]:
    """At most ``limit`` wrong responses per cell (the first in test order), and each cell's
    item count scaled by the share kept, so a label's rate stays (error rate x its share)."""
    kept: list[Wrong] = []
    seen: dict[str, int] = {}
    n_wrong: dict[tuple, int] = {}
    for w in wrong:
        k = (w.model, w.task, w.n, w.seed)
        n_wrong[k] = n_wrong.get(k, 0) + 1
        if seen.get(w.cell, 0) < limit:
            seen[w.cell] = seen.get(w.cell, 0) + 1
            kept.append(w)
    scaled = dict(totals)
    for k, nw in n_wrong.items():
        if nw > limit:
            scaled[k] = max(limit, round(totals[k] * limit / nw))
    return kept, scaled


def check_outputs(run_dir: Path) -> None:
    """InputError (before any request) if judge.json or labels.jsonl is a file sftscale did not write."""
    from ..io import check_owned, json_with_keys, table_with_columns

    check_owned(judge_json_path(run_dir), json_with_keys("judge", "prompt_version", "groups"),
                "a judge.json of sftscale judge")
    rows = table_with_columns("cell", "model", "task")
    check_owned(judge_dir(run_dir) / LABELS, lambda p: p.stat().st_size == 0 or rows(p),
                "a labels file of sftscale judge")


def _measured(wrong: list[Wrong], totals: dict[tuple, int]) -> dict[tuple, tuple[int, int]]:
    """(items, wrong responses) per model x task x N, seeds pooled."""
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for (m, t, n, _s), k in totals.items():
        out[(m, t, n)][0] += k
    for w in wrong:
        out[w.group][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _content_sha(w: Wrong) -> str:
    return sha256_json({"task": w.task, "prompt": w.prompt, "reference": w.reference,
                        "response": w.response})


def judge_run_dir(run_dir: str | os.PathLike, client: Any, check: str | os.PathLike | None = None,
                  say: Callable[[str], None] = print, limit: int | None = None) -> dict:
    """Judge, cache, write ``labels.jsonl`` and ``judge.json``; return judge.json's content."""
    run_dir = Path(run_dir)
    if not layout.store_path(run_dir).exists():
        raise InputError(run_dir, f"not a run directory (no {layout.STORE})")
    check_outputs(run_dir)
    wrong, totals = wrong_responses(run_dir)
    measured = _measured(wrong, totals)
    if limit is not None:
        wrong, totals = per_cell(wrong, totals, limit)
    checks = load_check_set(check) if check is not None else []
    everything = wrong + checks
    ident = client.identity()
    cache = JudgeCache(judge_dir(run_dir) / CACHE)
    keys = [cache_key(_content_sha(w), ident, PROMPT_VERSION) for w in everything]
    todo: dict[str, int] = {}
    for i, k in enumerate(keys):
        if cache.get(k) is None and k not in todo:
            todo[k] = i
    n_cached = len(everything) - sum(1 for k in keys if k in todo)
    say(f"judge: {len(wrong)} wrong responses" + (f" and {len(checks)} check-set responses" if checks else "")
        + f"; {n_cached} answered before (cache), sending {len(todo)} requests to {client.ref}")
    order = list(todo)
    convs = [messages(everything[todo[k]].task, taxonomy(everything[todo[k]].task), everything[todo[k]].prompt,
                      everything[todo[k]].reference, everything[todo[k]].response) for k in order]
    failed: dict[str, str] = {}
    done = [0]
    step = max(1, len(order) // 10)
    t0 = time.perf_counter()

    def on_result(j: int, status: str, text: str, error: str) -> None:
        k = order[j]
        w = everything[todo[k]]
        if status != "answered":
            failed[k] = error
        else:
            got = parse(text, taxonomy(w.task))
            cache.put(k, {"status": "ok" if got else "unparsed", "fine": got[0] if got else None,
                          "reason": got[1] if got else "", "raw": text[:4000]})
        done[0] += 1
        if done[0] % step == 0 or done[0] == len(order):
            say(f"judge: {done[0]}/{len(order)} answered ({len(failed)} failed)")

    if order:
        client.run(convs, on_result)
    wall = time.perf_counter() - t0
    rows = [_row(w, k, cache.get(k), failed.get(k), client.ref) for w, k in zip(everything, keys)]
    doc = summarise(rows, totals, ident, str(client.ref))
    for g in doc["groups"]:  # what was measured, before --limit (rates use the scaled items)
        g["items_evaluated"], g["wrong_evaluated"] = measured.get((g["model"], g["task"], g["n"]), (0, 0))
    doc["limit_per_cell"] = limit
    doc["run"] = {"sent": len(order), "cached": n_cached, "failed": len(failed), "wall_s": round(wall, 3),
                  "requests_per_s": round(len(order) / wall, 3) if wall > 0 and order else None,
                  "client": dict(getattr(client, "stats", {}))}
    judge_dir(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(judge_dir(run_dir) / LABELS, rows)
    atomic_write_json(judge_json_path(run_dir), doc)
    return doc


def _row(w: Wrong, key: str, hit: dict | None, error: str | None, ref: str) -> dict:
    if hit is None:
        status, fine, reason = "failed", None, ""
    else:
        # the answer is parsed again: a fixed parser reads cached answers without asking again
        got = parse(str(hit.get("raw", "")), taxonomy(w.task))
        status, fine, reason = ("ok", got[0], got[1]) if got else ("unparsed", None, "")
    tax = taxonomy(w.task)
    return {"cell": w.cell, "model": w.model, "task": w.task, "n": w.n, "seed": w.seed,
            "item_id": w.item_id, "label": tax.coarse(fine) if fine else None, "fine": fine,
            "reason": reason, "status": status, "error": error or "", "judge": ref,
            "prompt_version": PROMPT_VERSION, "format_ok": w.format_ok,
            "truth": w.truth_coarse, "truth_fine": w.truth_fine, "key": key}


def _slot(r: dict, coarse: bool) -> str:
    if r["status"] != "ok":
        return r["status"]
    return r["label"] if coarse else r["fine"]


def summarise(rows: list[dict], totals: dict[tuple, int], ident: dict, ref: str) -> dict:
    """judge.json's content from the label rows (see the module docstring)."""
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    n_items: dict[tuple, int] = defaultdict(int)
    for (m, t, n, _seed), k in totals.items():
        n_items[(m, t, n)] += k
    for r in rows:
        if r["cell"] != "check":
            by_group[(r["model"], r["task"], r["n"])].append(r)
    groups = []
    for g in sorted(n_items):
        rs = by_group.get(g, [])
        ni = n_items[g]
        rule = {"format": sum(r["format_ok"] is False for r in rs),
                "reasoning": sum(r["format_ok"] is not False for r in rs)}
        groups.append({"model": g[0], "task": g[1], "n": g[2], "n_items": ni, "n_wrong": len(rs),
                       "error_rate": len(rs) / ni if ni else None,
                       "coarse": label_shares([_slot(r, True) for r in rs], ni),
                       "fine": label_shares([_slot(r, False) for r in rs], ni),
                       "rule": {k: {"count": v, "rate": v / ni if ni else None} for k, v in rule.items()}})
    status = {s: sum(r["status"] == s for r in rows) for s in ("ok", "unparsed", "failed")}
    vs_rule: dict[str, int] = defaultdict(int)  # "rule/judge" class pairs of labelled responses
    for r in rows:
        if r["cell"] != "check" and r["status"] == "ok" and r["format_ok"] is not None:
            vs_rule[f"{'format' if r['format_ok'] is False else 'reasoning'}/{r['label']}"] += 1
    return {"version": 1, "judge": ref, "judge_identity": ident, "prompt_version": PROMPT_VERSION,
            "classes": list(COARSE), "vs_rule": dict(sorted(vs_rule.items())),
            "taxonomies": {t: taxonomy(t).fine for t in sorted({r["task"] for r in rows})},
            "status": status, "groups": groups, "agreement": _agreements(rows)}


def _agree(rs: list[dict]) -> dict:
    parsed = [r for r in rs if r["status"] == "ok"]
    return {"n": len(rs), "n_parsed": len(parsed),
            "coarse": agreement([r["truth"] for r in parsed], [r["label"] for r in parsed]),
            "fine": agreement([r["truth_fine"] for r in parsed], [r["fine"] for r in parsed])}


def _agreements(rows: list[dict]) -> dict:
    """Agreement with the toy world's truth per task and overall, and with the check set."""
    toy = [r for r in rows if r["cell"] != "check" and r["truth"] is not None]
    out: dict[str, Any] = {}
    if toy:
        out["toy"] = {"all": _agree(toy), **{t: _agree([r for r in toy if r["task"] == t])
                                            for t in sorted({r["task"] for r in toy})}}
    chk = [r for r in rows if r["cell"] == "check"]
    if chk:
        out["check"] = _agree(chk)
    return out


def read_judge_json(run_dir: str | os.PathLike) -> dict | None:
    p = judge_json_path(run_dir)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return None


__all__ = ["CACHE", "LABELS", "per_cell", "judge_dir", "judge_json_path",
           "judge_run_dir", "load_check_set", "read_judge_json", "summarise"]
