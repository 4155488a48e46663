"""``sftscale train`` (one finetuning cell) and ``sftscale model`` (resolve / convert a model).

``train`` prints a rich progress bar (steps, loss, tokens/s) on stderr and, at the end, one
JSON summary of the cell on stdout. A finished cell directory is not retrained. Every input
(model, task and its training data, N, seed >= 0, device, --out not a file, recipe) is checked
before anything is written; a failed run leaves no directory it created. Errors go to
``cli.main`` (exit 2 for bad input); the ValueErrors training raises about its data and recipe
(unmasked prompts, a TRL batch that does not divide...) count as bad input.

Not handled: several cells per call (use ``sftscale run`` with a study file), multi-GPU
launching (see docs/multi-gpu.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ._util import InputError, as_flag, parse_task_options


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        model: str = typer.Option(..., "--model", "-m", help="toy name, HF id, directory, .gguf or alias"),
        task: str = typer.Option(..., "--task", "-t", help="registered task name"),
        n: int = typer.Option(..., "--n", help="number of finetuning examples (0 = base model)"),
        seed: int = typer.Option(0, "--seed", help="subset and training seed"),
        out: Path = typer.Option(..., "--out", "-o", help="cell directory (ckpt/ + train_meta.json)"),
        recipe: Optional[Path] = typer.Option(None, "--recipe", help="YAML file of Recipe fields"),
        chat: Optional[bool] = typer.Option(None, "--chat/--no-chat",
                                            help="apply the chat template (overrides the recipe)"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: auto)"),
        task_option: list[str] = typer.Option([], "--task-option", help="KEY=VALUE for the task"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    ) -> None:
        """Finetune MODEL on N examples of TASK (seeded subset) into OUT."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from ..events import ProgressEvent
        from ..train import Recipe, default_recipe, train_cell

        opts = parse_task_options(task_option)
        rec = default_recipe(model)
        if recipe is not None:
            rec = Recipe.from_yaml(recipe, base=rec)
        if chat is not None:
            rec = rec.model_copy(update={"chat": chat})
        console = Console(stderr=True)
        try:
            if quiet or n == 0:
                meta = train_cell(model, task, n, seed, out, recipe=rec, task_options=opts or None,
                                  device=device)
            else:
                with Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("loss {task.fields[loss]:.4f}"),
                              TextColumn("{task.fields[tps]:,.0f} tok/s"),
                              TimeElapsedColumn(), TimeRemainingColumn(),
                              console=console, transient=False) as bar:
                    tid = bar.add_task("train", total=None, loss=float("nan"), tps=0.0)

                    def progress(ev: ProgressEvent) -> None:
                        bar.update(tid, total=ev.total, completed=ev.done,
                                   loss=ev.metrics["loss"], tps=ev.metrics["tokens_per_s"])

                    meta = train_cell(model, task, n, seed, out, recipe=rec,
                                      task_options=opts or None, progress=progress, device=device)
        except InputError as e:
            raise as_flag(e) from None
        except ValueError as e:  # training's checks of its data and recipe
            raise InputError(out, f"cannot train this cell: {e}") from None
        summary = {k: meta.get(k) for k in ("model", "task", "n", "seed", "steps", "steps_rule",
                                            "final_loss", "tokens_per_s", "train_wall_s",
                                            "checkpoint")}
        summary["out"] = str(out)
        print(json.dumps(summary))

    @app.command("model")
    def model_cmd(
        ref: str = typer.Argument(..., help="toy name, HF id, directory, .gguf or alias"),
        convert: bool = typer.Option(True, "--convert/--no-convert",
                                     help="convert a GGUF model to the safetensors cache now"),
    ) -> None:
        """Show what a model reference resolves to (converting GGUF once, into the cache)."""
        from ..models import is_toy, local_dir, model_weights_hash, resolve_model

        spec = resolve_model(ref)
        info = spec.to_dict()
        info["toy"] = is_toy(spec)
        if convert or spec.kind != "gguf":
            d = local_dir(spec)
            info["local_dir"] = str(d) if d else None
            info["weights_hash"] = model_weights_hash(spec)
        print(json.dumps(info, indent=2))
        sys.stdout.flush()
