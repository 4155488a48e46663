"""``sftscale eval``: generate and score one task for a model (and optional adapter).

Prints one JSON object of aggregates on stdout (format_rate, accuracy, ... with stderrs)
and, with ``--out``, writes ``results_<ts>.json`` + ``samples_<task>_<ts>.jsonl`` there
(see ``sftscale.evaluation``). A rich progress bar (fed by ``ProgressEvent``s) goes to stderr.

Not handled: several tasks or adapters per call (script it, or use ``sftscale study``, which
reuses one loaded base across adapters).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ._util import InputError, fail, parse_task_options


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: str = typer.Option(..., "--model", "-m",
                                  help="toy name, local dir, HF id, .gguf, or openai:<url>/v1/<name>"),
        task: str = typer.Option(..., "--task", "-t", help="registered task name"),
        adapter: Optional[Path] = typer.Option(None, "--adapter", help="adapter/checkpoint dir (or cell dir)"),
        limit: Optional[int] = typer.Option(None, "--limit", help="evaluate the first K items"),
        out: Optional[Path] = typer.Option(None, "--out", help="directory for results/samples files"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="default: automatic"),
        chat: bool = typer.Option(False, "--chat", help="apply the tokenizer's chat template"),
        allow_template_mismatch: bool = typer.Option(False, "--allow-template-mismatch"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                 help="content-addressed generation cache"),
        device: Optional[str] = typer.Option(None, "--device"),
        task_option: list[str] = typer.Option([], "--task-option", help="KEY=VALUE, repeatable"),
        no_progress: bool = typer.Option(False, "--no-progress"),
    ) -> None:
        """Evaluate MODEL (+ ADAPTER) on TASK; print aggregates as JSON."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..evaluation import evaluate
        from ..events import ProgressEvent

        if adapter is not None and not adapter.exists():
            raise InputError(adapter, "no such adapter directory", field="adapter")
        if batch_size is not None and batch_size < 1:
            raise InputError(None, "must be at least 1", field="batch-size")
        opts = parse_task_options(task_option)
        console = Console(stderr=True)
        show = not no_progress and console.is_terminal
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=not show) as prog:
            bar = prog.add_task(f"{task}", total=None)

            def on_progress(ev: ProgressEvent) -> None:
                prog.update(bar, completed=ev.done, total=ev.total)

            try:
                res = evaluate(model, task, adapter=adapter, limit=limit, out=out, chat=chat,
                               batch_size=batch_size, allow_template_mismatch=allow_template_mismatch,
                               task_options=opts, cache_dir=cache_dir, device=device,
                               progress=on_progress)
            except KeyboardInterrupt:
                fail("interrupted: no results file written", code=130)
            except (FileNotFoundError, OSError) as e:
                fail(e)
        metrics = dict(res["metrics"])
        metrics["tokens_per_s"] = round(res["timings"]["tokens_per_s"], 2)
        if res["paths"]:
            print(f"wrote {res['paths']['results']}", file=sys.stderr)
        print(json.dumps(metrics))
