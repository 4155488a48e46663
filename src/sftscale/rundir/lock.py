"""One writer per run directory: an advisory lock on ``DIR/.sftscale.lock``.

``RunLock(run_dir).acquire(wait=False)`` takes an exclusive ``flock`` on the lock file and
writes who holds it (pid, host, start time, command line). A second writer on the same
directory gets ``RunDirBusy`` at once, naming the holder, or waits for it with ``wait=True``.
The kernel drops the lock when its process dies, however it dies (SIGKILL included), so a
lock left by a dead process is simply taken over: the file stays, the lock does not.

Readers (``status``, ``export``, ``fit``, ``report``) take no lock: the store is SQLite in
WAL mode and every cell's completion is one transaction, so they read a consistent state.

Not handled: run directories on network filesystems whose ``flock`` is not shared between
hosts (two machines could then both write; keep one driver per directory there yourself),
and filesystems without ``flock`` at all (the lock is then refused with a clear error).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..io import InputError
from . import layout

LOCK_NAME = layout.LOCK


class RunDirBusy(InputError):
    """Another live process writes this run directory."""

    def __init__(self, run_dir: Path, holder: dict[str, Any]):
        self.holder = holder
        started = holder.get("started_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        super().__init__(
            run_dir,
            f"another sftscale run writes this directory (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {when}: {holder.get('command', '?')}); wait for "
            "it, stop it, or rerun with --wait to start when it ends")


class RunLock:
    """Exclusive lock of a run directory for the lifetime of one writer process."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = layout.lock_path(self.run_dir)
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def held(self) -> bool:
        """Does a live process hold the lock now? Takes no lock (a reader must never make a
        starting ``run`` fail): the kernel's table of flock locks (``/proc/locks``) for the
        lock file's inode where there is one, else the holder's pid from the lock file (on
        this host: is that process alive; on another host: assumed held)."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        try:
            table = Path("/proc/locks").read_text()
        except OSError:
            table = None
        if table is not None:  # "1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF"
            me = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
            for line in table.splitlines():
                parts = line.split()
                if "FLOCK" not in parts or "->" in parts:  # "->": a waiter, not a holder
                    continue
                i = parts.index("FLOCK") + 4
                if i < len(parts) and parts[i] == me:
                    return True
            return False
        h = self.holder()
        if not h.get("pid"):
            return False
        if h.get("host") != socket.gethostname():
            return True
        try:
            os.kill(int(h["pid"]), 0)
        except ProcessLookupError:
            return False
        except (OSError, ValueError):
            return True
        return True

    def acquire(self, wait: bool = False, poll_s: float = 0.5, on_wait: Any = None) -> "RunLock":
        """Take the lock; ``RunDirBusy`` if held and not ``wait``. ``on_wait(holder)`` is called
        once before waiting."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(self.path, f"cannot create the run directory's lock file ({e.strerror})") from None
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    raise RunDirBusy(self.run_dir, self.holder()) from None
                if not told and on_wait is not None:
                    on_wait(self.holder())
                told = True
                time.sleep(poll_s)
            except OSError as e:
                os.close(fd)
                raise InputError(self.path, f"this filesystem refuses file locks ({e.strerror})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                "command": " ".join(sys.argv) or "python"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunDirBusy", "RunLock"]
