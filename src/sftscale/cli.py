"""The ``sftscale`` command line: one typer app.

Each area keeps its commands in ``sftscale/commands/<area>.py`` with a ``register(app)``
function; this file only assembles them. Command modules import heavy libraries (torch,
transformers) inside the command bodies, so ``sftscale --help`` stays fast.

Errors: an ``InputError`` (bad file, line or field) prints one line to stderr and exits 2.
"""

from __future__ import annotations

import sys

import typer

from .commands import data, evaluate, fit, knowledge, report, study, toy, train
from .io import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure how abilities grow with the amount of post-training data.")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    """Measure how abilities grow with the amount of post-training data."""
    if version:
        from . import __version__
        print(__version__)
        raise typer.Exit()


# command modules, in the order of the data flow
for _mod in (data, train, evaluate, study, fit, knowledge, report, toy):
    _mod.register(app)


def main() -> None:
    # our own rich progress displays replace transformers' per-load tqdm bars ("Loading
    # weights ...") that would otherwise interleave with them; set before transformers loads
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
