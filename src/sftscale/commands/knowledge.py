"""``sftscale knowledge CONFIG.yaml [--out DIR]``: the knowledge-injection experiment.

Writes ``DIR/knowledge/table.json`` and ``table.md`` (see docs/knowledge.md) and prints the
markdown table. Not handled: running parts of the experiment on their own (rerun the command:
finished cells and evaluations are reused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("knowledge")
    def knowledge_cmd(
        config: Path = typer.Argument(..., help="knowledge YAML (e.g. studies/knowledge-toy.yaml)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="run directory (default: the config's output, "
                                                "else runs/<name>)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
        threads: Optional[int] = typer.Option(None, "--threads",
                                              help="torch CPU threads (1 is much faster on a busy "
                                                   "machine)"),
        reuse: list[Path] = typer.Option([], "--reuse", metavar="STUDY_DIR",
                                         help="a study run directory whose finished cell of the "
                                              "reasoning task (same model, N, seed, recipe) is "
                                              "linked as the reasoning start instead of trained "
                                              "again (repeatable)"),
    ) -> None:
        """Finetune starting points on new facts; table of direct/multihop accuracy with
        paired bootstrap intervals."""
        import sys

        from ..io import InputError
        from ..knowledge import load_config, run_knowledge, table_markdown

        cfg = load_config(config)
        for d in reuse:
            if not d.is_dir():
                raise InputError(d, "is not a directory (--reuse takes a study run directory)",
                                 field="reuse")
        if threads is not None:
            if threads < 1:
                raise InputError(None, f"--threads must be >= 1, got {threads}", field="threads")
            import torch

            torch.set_num_threads(threads)

        def log(s: str) -> None:
            if not quiet:
                print(f"[knowledge] {s}", file=sys.stderr, flush=True)

        table = run_knowledge(cfg, out, log=log, reuse=reuse)
        print(table_markdown(table))
