"""One writer per run directory: a second writer is refused with the holder named, waits with
``wait=True``, and takes over a lock whose process died (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sftscale.rundir.lock import RunDirBusy, RunLock

HOLD = """
import sys, time
from sftscale.rundir.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    p = _holder(tmp_path, 60)
    try:
        with pytest.raises(RunDirBusy) as ei:
            RunLock(tmp_path).acquire()
        assert ei.value.holder["pid"] == p.pid
        assert f"pid {p.pid}" in str(ei.value) and "--wait" in str(ei.value)
    finally:
        p.kill()
        p.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    p = _holder(tmp_path, 60)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    lock = RunLock(tmp_path).acquire()  # no error: the kernel dropped the dead process's lock
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_wait_blocks_until_the_holder_ends(tmp_path):
    p = _holder(tmp_path, 1.0)
    waited: list[dict] = []
    t0 = time.monotonic()
    with RunLock(tmp_path).acquire(wait=True, poll_s=0.05, on_wait=waited.append) as lock:
        assert time.monotonic() - t0 > 0.3
        assert waited and waited[0]["pid"] == p.pid
        assert lock.holder()["pid"] == os.getpid()
    p.wait()


def test_threads_of_one_process_do_not_share_a_released_lock(tmp_path):
    first = RunLock(tmp_path).acquire()
    errors: list[Exception] = []

    def second() -> None:
        try:
            RunLock(tmp_path).acquire()
        except RunDirBusy as e:
            errors.append(e)

    t = threading.Thread(target=second)
    t.start()
    t.join()
    assert len(errors) == 1  # flock is per open file: a second open in-process is refused too
    first.release()
    RunLock(tmp_path).acquire().release()
