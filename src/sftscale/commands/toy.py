"""CLI for the toy world: ``sftscale pretrain-toy`` and ``sftscale toy-info``.

Not handled: pretraining on GPUs (the toy models are meant for the CPU), resuming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("pretrain-toy")
    def pretrain_toy_cmd(
        size: str = typer.Option("S", help="toy model size: S, M or L"),
        out: Path = typer.Option(..., help="output directory (config, weights, tokenizer, toy_meta.json)"),
        seed: int = typer.Option(0, help="seed of the initialisation, corpus and batch order"),
        steps: Optional[int] = typer.Option(None, help="optimizer steps (default: the size's recipe)"),
        threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's)"),
        eval_every: int = typer.Option(200, help="measure prose fact recall every this many steps"),
    ) -> None:
        """Pretrain a tiny toy base model on the toy-world corpus with the shared training loop."""
        from ..io import InputError
        from ..toyworld.pretrain import SIZES, pretrain_toy

        if size not in SIZES:
            raise InputError(None, f"unknown size {size!r}; known: {', '.join(SIZES)}", field="--size")
        import shlex
        import sys

        command = "sftscale " + shlex.join(sys.argv[1:])
        pretrain_toy(size, out, seed=seed, steps=steps, threads=threads, eval_every=eval_every,
                     command=command)

    @app.command("toy-probe")
    def toy_probe_cmd(
        model: str = typer.Option("toy-S", help="toy model name or directory"),
        task: str = typer.Option("toy-multihop", help="toy task"),
        n: str = typer.Option("0,32,256", help="comma-separated numbers of finetuning examples"),
        seeds: str = typer.Option("0", help="comma-separated seeds"),
        limit: Optional[int] = typer.Option(None, help="evaluate on the first LIMIT test items"),
        lr: Optional[float] = typer.Option(None, help="finetuning learning rate [default: the model's]"),
        epochs: Optional[int] = typer.Option(None, help="epochs over the N examples [default: the model's]"),
        min_steps: Optional[int] = typer.Option(None, help="floor on optimizer steps [default: the model's]"),
        max_steps: Optional[int] = typer.Option(None, help="cap on optimizer steps [default: the model's]"),
        out: Optional[Path] = typer.Option(None, help="write the rows as JSON here"),
    ) -> None:
        """Learnability probe: finetune a toy model on N examples (loss on completions), score."""
        from ..io import InputError, atomic_write_json
        from ..toyworld.probe import probe

        try:
            ns = [int(x) for x in n.split(",") if x.strip()]
            sd = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise InputError(None, "expected comma-separated integers", field="--n/--seeds") from None
        rows = probe(model, task, ns, sd, limit=limit, lr=lr, epochs=epochs, min_steps=min_steps,
                     max_steps=max_steps)
        for r in rows:
            typer.echo(f"n={r['n']:5d} seed={r['seed']} format_rate={r['format_rate']:.3f} "
                       f"accuracy={r['accuracy']:.3f} steps={r.get('steps', 0)} "
                       f"train_s={r.get('train_s', 0)} eval_s={r['eval_s']}")
        if out:
            atomic_write_json(out, rows)

    @app.command("toy-info")
    def toy_info_cmd() -> None:
        """List the shipped toy models with their size and measured recall."""
        import json

        from ..toyworld import TOY_MODELS, toy_model_path

        for name in TOY_MODELS:
            try:
                p = toy_model_path(name)
            except FileNotFoundError as e:
                typer.echo(f"{name}: not shipped ({e})")
                continue
            meta = json.loads((p / "toy_meta.json").read_text(encoding="utf-8"))
            typer.echo(f"{name}: {meta['parameters']} params, {meta['steps']} steps, "
                       f"recall {meta['recall']}, {p}")
