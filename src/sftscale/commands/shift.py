"""``sftscale shift DIR``: what finetuning changed, token by token (docs/token-shift.md)."""

from __future__ import annotations

from pathlib import Path

import typer


def shift_cmd(
    run_dir: Path = typer.Argument(..., help="run directory of a study"),
    n_boot: int = typer.Option(1000, "--n-boot", min=1, help="bootstrap replicates over items"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap"),
) -> None:
    """Write DIR/shift.json (per model, task, N and role: shares of unshifted, marginal and
    shifted tokens and the mean KL, with bootstrap intervals; first 5 tokens vs the rest) and
    DIR/shift/tokens.jsonl.gz (one line per cell and item), from the cells' `shift` stage."""
    from ..tokenshift.summary import write

    out, toks, doc = write(run_dir, n_boot=n_boot, seed=seed)
    cells = {(g["model"], g["task"], g["n"]) for g in doc["groups"]}
    if not cells:
        print("no done cell with N > 0 has token-shift data (is `analysis: {token_shift: false}` set?)")
    for g in doc["groups"]:
        if g["role"] == "all":
            s, k = g["shifted"], g["mean_kl"]
            fmt = g.get("format_of_shifted", {}).get("mid")
            print(f"{g['model']} {g['task']} N={g['n']}: {s['mid']:.1%} of {g['n_tokens']} tokens "
                  f"shifted [{s['lo']:.1%}, {s['hi']:.1%}], mean KL {k['mid']:.3f} nats"
                  + (f", {fmt:.0%} of shifted tokens are format" if fmt is not None else ""))
    print(out)
    print(toks)


def register(app: typer.Typer) -> None:
    app.command("shift")(shift_cmd)
