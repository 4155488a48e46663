"""``sftscale tasks`` (what can be evaluated) and ``sftscale score`` (score a JSONL of responses).

``score`` reads one JSON object per line, maps each to a test item with the task's
``resolve_line`` (by ``id``, or a task-specific key such as ``question`` or ``task_id``),
scores them all with ``task.score_many`` and prints ONE JSON object of aggregates on stdout;
anything libraries print while loading goes to stderr. A bad line, an unknown id, a missing
field stops with the file, line and reason (exit code 2), and then no samples file is written.

Several lines per item (evalplus / human-eval samples files: ``{"task_id", "completion"}`` or
``{"task_id", "solution"}`` n times per task) are n samples: each record gets ``sample`` (its
rank among the item's lines) and the task aggregates them: pass@k for k in 1, 10, 100 up to
the smallest n for code tasks (evalplus' rule: items may have different n, each uses its
own), the mean over samples otherwise (``tasks.base.mean_metrics``). For a task that is not
scored by pass@k (``Task.samples_per_item`` false: gsm8k, ifeval, ...) a repeated item is
an error naming both lines (it would count as two items), unless its lines carry distinct
``sample`` indices.

Not handled: scoring several tasks in one call, streaming huge files (all lines are read
first).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ._util import InputError, parse_task_options


def tasks_table() -> list[dict]:
    """describe() of every registered task; unavailable ones get ``status`` and a reason."""
    from ..tasks import get_task, task_names

    rows = []
    for name in task_names():
        try:
            info = dict(get_task(name).describe(), status="ok")
        except (InputError, ValueError) as e:  # the task needs options (e.g. multihop-file path=)
            if isinstance(e, InputError) and not str(e.field).startswith("task option"):
                info = {"name": name, "status": "unavailable", "reason": str(e).splitlines()[0][:120]}
            else:
                reason = e.reason if isinstance(e, InputError) else str(e)
                info = {"name": name, "status": "needs options", "reason": reason.splitlines()[0]}
        except Exception as e:  # missing data, a broken task...
            info = {"name": name, "status": "unavailable",
                    "reason": f"{type(e).__name__}: {e}".splitlines()[0][:120]}
        rows.append(info)
    return rows


def score_file(task_name: str, responses: Path, samples_out: Optional[Path] = None,
               limit: Optional[int] = None, options: Optional[dict] = None) -> dict:
    """Score a responses JSONL for a task; write per-sample records if asked; return aggregates."""
    from ..data import read_numbered
    from ..io import atomic_write_jsonl
    from ..tasks import get_task

    try:
        task = get_task(task_name, **(options or {}))
    except InputError as e:  # an unknown name or option: name the command-line flag
        flag = "--task" if e.field == "task" else "--task-option"
        raise InputError(None, e.reason, field=flag) from None
    if samples_out is not None and samples_out.is_dir():
        raise InputError(samples_out, "is a directory; --samples-out takes the path of a JSONL "
                         "file to write", field="--samples-out")
    if not str(responses).lower().endswith((".jsonl", ".jsonl.gz")):
        raise InputError(responses, "expected a .jsonl or .jsonl.gz file of responses")
    rows = read_numbered(responses)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise InputError(responses, "no response lines")
    items, texts, index = [], [], []
    seen: dict[str, int] = {}
    where: dict[Any, int] = {}  # item id (and sample index) -> its first line
    for line, obj in rows:
        item, text = task.resolve_line(obj, line, responses)
        _check_repeat(task, item.id, obj, line, responses, where)
        index.append(seen.get(item.id, 0))  # sample index: the line's rank among its item's
        seen[item.id] = index[-1] + 1
        items.append(item)
        texts.append(text)
    records = task.score_many(items, texts)
    if max(seen.values()) > 1:  # several samples per item: keep each one's index
        for r, i in zip(records, index):
            r["sample"] = i
    if samples_out is not None:
        atomic_write_jsonl(samples_out, [{**r, "response": t} for r, t in zip(records, texts)])
    return task.aggregate(records)


def _check_repeat(task, item_id: str, obj: dict, line: int, path: Path, where: dict) -> None:
    """A second line for one item is an InputError (it would count as another item) unless
    the task takes several samples per item (pass@k) or the lines carry distinct ``sample``
    indices; a ``sample`` index given twice for one item is one too."""
    key = next((k for k in ("id", *task.lookup_keys()) if k in obj), "id")
    if "sample" in obj:
        s = obj["sample"]
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise InputError(path, f"must be a sample index (an integer >= 0), got {s!r}",
                             line=line, field="sample")
        k = (item_id, s)
        if k in where:
            raise InputError(path, f"item {item_id!r} has sample {s} on line {where[k]} already; "
                             "each sample of an item needs its own index", line=line, field="sample")
        where[k] = line
        where.setdefault(item_id, line)
        return
    if item_id in where and not task.samples_per_item:
        raise InputError(path, f"item {item_id!r} already has a response on line {where[item_id]}; "
                         "a repeated item would count twice. Remove the duplicate, or give each of "
                         "several responses per item a distinct 'sample' index", line=line, field=key)
    where.setdefault(item_id, line)


def register(app: typer.Typer) -> None:
    @app.command("tasks")
    def tasks_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List every registered task with its sizes (test/train), licence and primary metric."""
        with contextlib.redirect_stdout(sys.stderr):
            rows = tasks_table()
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="sftscale tasks")
        for col in ("task", "test", "train", "licence", "primary metric", "status"):
            table.add_column(col, justify="right" if col in ("test", "train") else "left",
                             no_wrap=col != "status")
        for r in rows:
            if r["status"] == "ok":
                table.add_row(r["name"], f"{r['n_test']:,}", f"{r['n_train']:,}" if r["n_train"] else "-",
                              r.get("license") or "?", r.get("primary_metric", ""), "ok")
            else:
                table.add_row(r["name"], "-", "-", "-", "-", f"{r['status']}: {r['reason']}")
        Console(width=max(Console().width, 120)).print(table)

    @app.command("score")
    def score_cmd(
        task: str = typer.Option(..., "--task", "-t", help="Registered task name (see `sftscale tasks`)."),
        responses: Path = typer.Option(..., "--responses", "-r",
                                       help="JSONL: one {id|question|..., response} per line."),
        samples_out: Optional[Path] = typer.Option(None, "--samples-out",
                                                   help="Write per-sample records here (JSONL)."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N lines."),
        task_option: list[str] = typer.Option([], "--task-option", "-o",
                                               help="Task constructor option KEY=VALUE (repeatable), "
                                                    "e.g. path=qa.jsonl."),
    ) -> None:
        """Score a JSONL of responses; print one JSON object of aggregates on stdout."""
        with contextlib.redirect_stdout(sys.stderr):
            agg = score_file(task, responses, samples_out, limit, parse_task_options(task_option))
        print(json.dumps(agg))
