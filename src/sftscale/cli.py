"""The ``sftscale`` command line: one typer app.

Each area keeps its commands in ``sftscale/commands/<area>.py`` with a ``register(app)``
function; this file only assembles them. Command modules import heavy libraries (torch,
transformers) inside the command bodies, so ``sftscale --help`` stays fast.

Errors: ``report_error`` is the one place that turns exceptions into messages and exit codes,
so commands raise and never print-and-exit themselves. It runs around every command (so
``typer.testing.CliRunner`` on ``app`` sees the same exit codes) and in ``main`` for anything
raised outside a command: an ``InputError`` (bad file, line or
field) and a user-caused ``OSError`` (a missing, unreadable or wrongly typed path, a full or
read-only disk) print one ``error: ...`` line and exit 2; Ctrl-C prints one line and exits
130; anything else is a bug of sftscale: its traceback is kept, followed by one line saying
so and where to report it (exit 1).
"""

from __future__ import annotations

import errno
import functools
import sys
import traceback
from pathlib import Path

import typer

from .commands import data, evaluate, fit, judge, knowledge, report, study, toy, train
from .commands import shift as shift_commands
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


#: typer's own control flow (usage errors, --help, typer.Exit): never reported as errors
_TYPER_FLOW = (typer.Exit, typer.Abort, typer.TyperException)


def _reported(fn):
    """``fn`` with its exceptions reported by ``report_error`` (then SystemExit with its code);
    Ctrl-C goes on to typer (exit 130, and ``main`` prints the line)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _TYPER_FLOW:
            raise
        except Exception as e:  # noqa: BLE001 - reported, never swallowed
            raise SystemExit(report_error(e)) from None
    return run


# command modules, in the order of the data flow
for _mod in (data, train, evaluate, study, fit, knowledge, report, toy, judge):
    _mod.register(app)
shift_commands.register(app)
for _cmd in app.registered_commands:
    _cmd.callback = _reported(_cmd.callback)


def main() -> None:
    """Run the app; every exception ends here as one clear line (``report_error``)."""
    # our own rich progress displays replace transformers' per-load tqdm bars ("Loading
    # weights ...") that would otherwise interleave with them; set before transformers loads
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from .quiet import quiet_third_party_warnings

    quiet_third_party_warnings()  # warnings that are not the user's to act on (quiet.py)
    try:
        app()
    except SystemExit as e:  # typer's own exits: usage errors, --help, typer.Exit, Ctrl-C
        if e.code == 130 and _interrupted(e):
            print(INTERRUPTED, file=sys.stderr)
        raise
    except BaseException as e:  # noqa: BLE001 - each is reported, none is swallowed
        sys.exit(report_error(e))
    sys.exit(0)


INTERRUPTED = "interrupted (Ctrl-C): files already written are complete; rerun to continue"
REPORT = ("internal error: this is a bug in sftscale, not a problem with your input; please "
          "report it on the project's issue tracker with the command you ran and this traceback")
#: errors of the environment rather than of a path's kind: always the user's to fix
_DISK: dict[int | None, str] = {errno.ENOSPC: "no space left on device: free some space and rerun",
                                errno.EDQUOT: "disk quota exceeded: free some space and rerun",
                                errno.EROFS: "read-only file system: choose a writable location"}
#: errors about one path the user named
_PATH: dict[int | None, str] = {errno.ENOENT: "no such file or directory",
                                errno.EACCES: "permission denied: check the permissions of this path",
                                errno.EPERM: "operation not permitted: check the permissions of this path",
                                errno.EISDIR: "is a directory, but a file is needed here",
                                errno.ENOTDIR: "a part of this path is a file, but a directory is needed here",
                                errno.EEXIST: "already exists (a file where a directory is needed?)",
                                errno.ENOTEMPTY: "directory not empty",
                                errno.ENAMETOOLONG: "file name too long"}


def report_error(e: BaseException) -> int:
    """Print what went wrong for an exception that reached ``main``; return the exit code.

    Ctrl-C: one line, 130. ``InputError``: ``error: <file>, line L, field 'F': reason``, 2. An
    ``OSError`` of the disk (full, quota, read-only) or about a path outside sftscale's own
    installation (missing, wrong kind, no permission): ``error: <path>: what to do``, 2. Anything
    else is our bug: its traceback, then one line saying so and where to report it, 1."""
    if isinstance(e, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if isinstance(e, InputError):
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(e, BrokenPipeError):  # `sftscale ... | head`: the reader left; not an error
        return 1
    if isinstance(e, OSError) and _user_os_error(e):
        path = e.filename2 if e.filename2 is not None else e.filename
        reason = _DISK.get(e.errno) or _PATH.get(e.errno) or str(e.strerror)
        print(f"error: {InputError(path, reason)}", file=sys.stderr)
        return 2
    traceback.print_exception(e)
    print(REPORT, file=sys.stderr)
    return 1


def _user_os_error(e: OSError) -> bool:
    """True for the OSErrors a user causes: the disk's state, or a path not inside sftscale's
    own package or Python installation (a file missing THERE is a broken install: our bug)."""
    if e.errno in _DISK:
        return True
    if e.errno not in _PATH:
        return False
    path = e.filename2 if e.filename2 is not None else e.filename
    if path is None:
        return False
    p = Path(str(path)).resolve()
    ours = [Path(__file__).resolve().parent, Path(sys.prefix).resolve(),
            Path(sys.base_prefix).resolve()]
    return not any(p.is_relative_to(o) for o in ours)


def _interrupted(e: SystemExit) -> bool:
    """typer turns an unhandled Ctrl-C into ``Exit(130) from KeyboardInterrupt`` and exits
    silently; a command that handled Ctrl-C itself (and said so) raised its Exit without
    ``from``, so only the former gets our line."""
    ctx = e.__context__
    return ctx is not None and isinstance(ctx.__cause__, KeyboardInterrupt)


if __name__ == "__main__":
    main()
