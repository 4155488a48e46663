"""Run a study until a crash-test hook point, then stop there (used by tests/test_study_run.py).

    python tests/crash_driver.py STUDY.yaml OUT POINT[@KEY_SUBSTRING] [sleep|kill]

Does what ``sftscale run STUDY.yaml --out OUT --no-progress`` does, with the default stages,
through a ``CellRunner(hooks=StopAt(...))``: at POINT (``train``, ``eval.written`` or
``commit``; see ``sftscale.study.runner``) of the first cell whose key contains KEY_SUBSTRING, the hook writes
``OUT/.hook-POINT`` ("<pid> <key>") and then sleeps, for the test to SIGKILL the process, or
with ``kill`` SIGKILLs the process itself. A helper script, not a test file.

    python tests/crash_driver.py cli [--cheap] [--slow S] [--hook POINT[@KEY][:ACTION]] -- ARGS

runs the real command line (``sftscale ARGS``: exit codes, messages, ``--wait``, SIGTERM) with
``run_study`` given a ``CellRunner`` of the hook (if any) and, with ``--cheap``, the cheap
file-writing stages of tests/study_helpers.py (each sleeping S seconds first, so that a test
can interrupt it) and no model checks (``start_process`` of tests/cli.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


class StopAt:
    """The hook: stop at ``point`` of the cells whose key contains ``sub`` (module-level, so
    that it pickles)."""

    def __init__(self, spec: str, action: str = "sleep"):
        self.point, _, self.sub = spec.partition("@")
        self.action = action

    def __call__(self, point: str, run_dir: Path, key: str) -> None:
        if point != self.point or (self.sub and self.sub not in key):
            return
        from sftscale.io import atomic_write_text

        atomic_write_text(Path(run_dir) / f".hook-{point}", f"{os.getpid()} {key}\n")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)


class Slow:
    """A stage that sleeps ``seconds`` first (module-level, so that it pickles)."""

    def __init__(self, stage, seconds: float):
        self.stage, self.seconds = stage, seconds

    def __call__(self, cell, ctx) -> None:
        time.sleep(self.seconds)
        self.stage(cell, ctx)


def cli(argv: list[str]) -> int:
    """``sftscale ARGS`` with an injected runner; see the module docstring."""
    import functools

    import sftscale.study.runner as runner_mod
    from sftscale.cli import main as sftscale_main

    opts, args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    kw: dict = {}
    if "--hook" in opts:
        spec, _, action = opts[opts.index("--hook") + 1].partition(":")
        kw["hooks"] = StopAt(spec, action or "sleep")
    if "--cheap" in opts:
        from study_helpers import cheap_eval, cheap_train

        from sftscale.study.stages import with_runs

        slow = float(opts[opts.index("--slow") + 1]) if "--slow" in opts else 0.0
        kw["stages"] = with_runs(train=Slow(cheap_train, slow), eval=Slow(cheap_eval, slow))
    extra = {"check": False} if "--cheap" in opts else {}
    runner_mod.run_study = functools.partial(runner_mod.run_study,
                                             runner=runner_mod.CellRunner(**kw), **extra)
    sys.argv = ["sftscale", *args]
    sftscale_main()
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as sftscale.cli.main does
    if argv and argv[0] == "cli":
        return cli(argv[1:])
    from sftscale.config import load_study
    from sftscale.study.runner import CellRunner, run_study

    study, out, spec, *action = argv
    res = run_study(load_study(study), out=out, runner=CellRunner(hooks=StopAt(spec, *action)),
                    progress="lines")
    print(res.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
