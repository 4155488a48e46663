"""Run a study until a crash-test hook point, then stop there (used by tests/test_study_run.py).

    python tests/crash_driver.py STUDY.yaml OUT POINT[@KEY_SUBSTRING] [sleep|kill]

Does what ``sftscale run STUDY.yaml --out OUT --no-progress`` does, with the default stages,
through a ``CellRunner(hooks=StopAt(...))``: at POINT (``train``, ``eval`` or ``commit``; see
``sftscale.study.runner``) of the first cell whose key contains KEY_SUBSTRING, the hook writes
``OUT/.hook-POINT`` ("<pid> <key>") and then sleeps, for the test to SIGKILL the process, or
with ``kill`` SIGKILLs the process itself. A helper script, not a test file.
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


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as sftscale.cli.main does
    from sftscale.config import load_study
    from sftscale.study.runner import CellRunner, run_study

    study, out, spec, *action = argv
    res = run_study(load_study(study), out=out, runner=CellRunner(hooks=StopAt(spec, *action)),
                    progress="lines")
    print(res.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
