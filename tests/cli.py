"""The one way tests drive the ``sftscale`` command line (a helper module, not a test file).

- ``run(*args, cwd=None, input=None, env=None) -> Result``: in this process, inside typer's
  ``CliRunner`` isolation (stdin, stdout, stderr and the environment swapped), through
  ``sftscale.cli.main``: the installed command's own entry point, so its error handling
  (``report_error``: exit 2 and one ``error:`` line for a user's mistake, the traceback and
  the bug line for ours, 130 for Ctrl-C) and its exit codes and messages are the real ones.
  The default for every test.
- ``run_process(*args, cwd=None, input=None, env=None, timeout=600, patch=None) -> Result``:
  ``python -m sftscale.cli ARGS`` in a fresh process, for what only a real process shows: the
  traceback and exit code a user sees, a fresh interpreter (no torch state from earlier
  tests), warnings printed by a clean start. ``env`` goes on top of this process's
  environment (None removes a variable); ``patch`` is Python source run in the child before
  ``main`` (to make a command raise, say).
- ``start_process(*args, driver=(), **popen) -> subprocess.Popen``: ``sftscale ARGS`` running
  in the background through tests/crash_driver.py's ``cli`` mode (``driver`` holds its options,
  such as ``--cheap``, ``--slow S``, ``--hook POINT``), for signals, SIGKILL and concurrent
  runs.
- ``user_error(result, *needles) -> str``: asserts a user's mistake (exit 2, no traceback,
  every needle in the output) and returns the output.

Arguments are converted with ``str`` (paths may be passed as they are).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DRIVER = Path(__file__).with_name("crash_driver.py")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout, then stderr."""
        return self.stdout + self.stderr


def run(*args: object, cwd: str | Path | None = None, input: str | None = None,
        env: dict[str, str] | None = None) -> Result:
    """``sftscale ARGS`` in this process (see the module docstring)."""
    from typer.testing import CliRunner

    from sftscale import cli

    argv, old_cwd = sys.argv, os.getcwd()
    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        sys.argv = ["sftscale", *map(str, args)]
        if cwd is not None:
            os.chdir(cwd)
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = argv
            os.chdir(old_cwd)
            sys.stdout.flush()
            sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def _env(env: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment, with this process's import path (the tests run from a
    source tree), and ``env`` on top (a variable set to None is removed)."""
    merged = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
              **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def run_process(*args: object, cwd: str | Path | None = None, input: str | None = None,
                env: dict[str, str | None] | None = None, timeout: float = 600,
                patch: str | None = None) -> Result:
    """``sftscale ARGS`` in a fresh process (see the module docstring)."""
    argv = [str(a) for a in args]
    if patch is None:
        cmd = [sys.executable, "-m", "sftscale.cli", *argv]
    else:
        code = (f"{patch}\nimport sys\nfrom sftscale.cli import main\n"
                f"sys.argv = ['sftscale', *{argv!r}]\nmain()\n")
        cmd = [sys.executable, "-c", code]
    p = subprocess.run(cmd, capture_output=True, text=True, input=input, cwd=cwd,
                       env=_env(env), timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def start_process(*args: object, driver: tuple[str, ...] = (), **popen: object) -> subprocess.Popen:
    """``sftscale ARGS`` in a background process (see the module docstring); stdout and stderr
    are pipes, as text."""
    return subprocess.Popen([sys.executable, str(DRIVER), "cli", *driver, "--",
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(None), **popen)


def user_error(r: Result, *needles: str) -> str:
    """Assert exit 2, no traceback, and every needle in the output; return the output."""
    text = r.output
    assert "Traceback" not in text, text
    assert r.exit_code == 2, (r.exit_code, text)
    for n in needles:
        assert n in text, (n, text)
    return text
