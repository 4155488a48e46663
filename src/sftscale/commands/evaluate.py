"""``sftscale eval``: generate and score one task for a model (and optional adapter).

Prints one JSON object of aggregates on stdout (format_rate, accuracy, ... with stderrs)
and, with ``--out``, writes ``results_<ts>.json`` + ``samples_<task>_<ts>.jsonl`` there
(see ``sftscale.evaluation``). A rich progress bar (fed by ``ProgressEvent``s) goes to stderr.

``--adapter`` takes a checkpoint dir, a ``train`` output or a study cell dir. A checkpoint
trained from another model than ``--model`` is refused (its recorded base is named); with
``--base-from-checkpoint`` (and no ``--model``) the recorded base is used and said so, so the
results file always names the model actually evaluated. Errors go to ``cli.main``.

Sampling (``--temperature``, ``--top-p``, ``--n-samples``, ``--seed``) and few-shot
(``--num-fewshot``) are ``evaluate``'s ``sampling`` and ``num_fewshot``; greedy zero-shot is
the default.

Not handled: several tasks or adapters per call (script it, or use ``sftscale study``, which
reuses one loaded base across adapters).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ._util import InputError, as_flag, parse_task_options


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: Optional[str] = typer.Option(
            None, "--model", "-m", help="toy name, local dir, HF id, .gguf, or openai:<url>/v1/<name> "
            "(required unless --base-from-checkpoint)"),
        task: str = typer.Option(..., "--task", "-t", help="registered task name"),
        adapter: Optional[Path] = typer.Option(
            None, "--adapter", help="checkpoint dir (ckpt/), `sftscale train` output or study cell "
            "dir; its base must be --model"),
        base_from_checkpoint: bool = typer.Option(
            False, "--base-from-checkpoint",
            help="use the base model recorded with --adapter instead of giving --model"),
        limit: Optional[int] = typer.Option(None, "--limit", help="evaluate the first K items"),
        out: Optional[Path] = typer.Option(None, "--out", help="directory for results/samples files"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="default: automatic"),
        chat: bool = typer.Option(False, "--chat", help="apply the tokenizer's chat template"),
        allow_template_mismatch: bool = typer.Option(False, "--allow-template-mismatch"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                 help="content-addressed generation cache"),
        device: Optional[str] = typer.Option(None, "--device",
                                             help="cpu, cuda, cuda:N, mps, or auto (spread over every visible GPU)"),
        task_option: list[str] = typer.Option([], "--task-option", help="KEY=VALUE, repeatable"),
        no_progress: bool = typer.Option(False, "--no-progress"),
        temperature: Optional[float] = typer.Option(
            None, "--temperature", help="sample at this temperature (default: the task's, greedy)"),
        top_p: Optional[float] = typer.Option(None, "--top-p", help="nucleus sampling mass (default 1)"),
        n_samples: Optional[int] = typer.Option(
            None, "--n-samples", help="samples per prompt (default 1; pass@k for code tasks)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="sampling seed (default 0)"),
        num_fewshot: int = typer.Option(
            0, "--num-fewshot", help="in-context examples from the training pool (gsm8k: lm-eval's context)"),
    ) -> None:
        """Evaluate MODEL (+ ADAPTER) on TASK; print aggregates as JSON."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..evaluation import evaluate
        from ..events import ProgressEvent

        model = _model_for(model, adapter, base_from_checkpoint)
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
                               progress=on_progress, num_fewshot=num_fewshot,
                               sampling={"temperature": temperature, "top_p": top_p,
                                         "n": n_samples, "seed": seed})
            except InputError as e:
                if e.path is None and e.field in _EVAL_FLAGS:
                    raise InputError(None, e.reason, field=_EVAL_FLAGS[e.field]) from None
                raise as_flag(e) from None
        metrics = dict(res["metrics"])
        metrics["tokens_per_s"] = round(res["timings"]["tokens_per_s"], 2)
        if res["paths"]:
            print(f"wrote {res['paths']['results']}", file=sys.stderr)
        print(json.dumps(metrics))


#: evaluate()'s field names for the options only ``eval`` has
_EVAL_FLAGS = {"n": "--n-samples", "temperature": "--temperature", "top-p": "--top-p",
               "num_fewshot": "--num-fewshot"}


def _model_for(model: Optional[str], adapter: Optional[Path], from_ckpt: bool) -> str:
    """--model, or with --base-from-checkpoint the base recorded with --adapter."""
    if not from_ckpt:
        if model is None:
            raise InputError(None, "missing: give the model to evaluate (or --adapter with "
                             "--base-from-checkpoint)", field="--model")
        return model
    if model is not None or adapter is None:
        raise InputError(None, "--base-from-checkpoint takes the model from --adapter: give "
                         "--adapter and no --model", field="--base-from-checkpoint")
    from ..evaluation.checkpoints import checkpoint_base, locate_adapter

    try:
        base, src = checkpoint_base(locate_adapter(adapter))
    except InputError as e:
        raise as_flag(e) from None
    if base is None:
        raise InputError(adapter, "records no base model (no train_meta.json model, no "
                         "adapter_config.json base_model_name_or_path): give --model",
                         field="--base-from-checkpoint")
    print(f"evaluating on {base}, the base model recorded in {src}", file=sys.stderr)
    return base
