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
    ) -> None:
        """Finetune starting points on new facts; table of direct/multihop accuracy with
        paired bootstrap intervals."""
        import sys

        from ..knowledge import load_config, run_knowledge, table_markdown

        cfg = load_config(config)

        def log(s: str) -> None:
            if not quiet:
                print(f"[knowledge] {s}", file=sys.stderr, flush=True)

        table = run_knowledge(cfg, out, log=log)
        print(table_markdown(table))
