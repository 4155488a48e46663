"""Run untrusted Python (model-written code) in a fresh, limited, throw-away process.

Each program runs in its own interpreter (``python -I -S -B``) started in a new session, so
its whole process group can be killed, with:

- a wall-clock timeout, and CPU-time (RLIMIT_CPU), address-space (RLIMIT_AS), file-size
  (RLIMIT_FSIZE) and core-dump limits set before any untrusted code runs;
- a private temporary working directory (also HOME and TMPDIR), deleted afterwards;
- a scrubbed environment: only PATH, LANG, HOME, TMPDIR and single-thread settings, never
  the parent's variables (so no tokens or keys);
- when ``unshare`` can create namespaces (as root, or unprivileged through a user
  namespace): no network at all (an empty network namespace), its own PID namespace
  (``getppid()`` is 0, the parent is not visible, and every process the program started
  dies with it, even one that called ``setsid``), its own ``/proc``, and a read-only view
  of the whole filesystem except the private directory (``mount_setattr``, Linux >= 5.12);
- a guard installed before untrusted code runs that replaces process creation
  (``os.fork``, ``os.system``, ``subprocess``, ``os.exec*``/``spawn*``/``posix_spawn``),
  signalling (``os.kill``, ``killpg``), file deletion/renaming/permission changes,
  ``chdir``, ``exit``/``quit``, sockets and the ``ctypes`` module by functions that raise
  ``PermissionError``, and lets ``open``/``io.open``/``os.open`` reach only the private
  directory;
- after every run, SIGKILL to the program's process group before it is reaped (no strays).

A run *completes* only when the harness writes its end marker, after the program and its
tests ran. The marker goes to a file descriptor the parent passed in (not stdout), prefixed
by a random 128-bit nonce the parent sent on stdin, which is then replaced by /dev/null. So
``print``-ing a marker, ``sys.exit(0)``, ``os._exit(0)``, raising ``SystemExit`` or
``BaseException``, redefining ``exit`` or the test's ``check`` before it is defined, or
killing itself all end in a non-completed run.

What this does NOT protect against (it is not a security boundary like a container or VM):
a program written to attack the harness from inside the same interpreter can find the
nonce and the emit function (``gc``, frame objects, ``/proc/self/mem``) and forge a
completed run; it can undo the Python-level guard (e.g. ``_io.FileIO``, ``_socket``, or
other C modules imported before the guard) — then only the namespaces and rlimits remain,
and without namespaces (no ``unshare``) nothing stops it from writing files the user may
write, signalling processes of the same user, opening sockets or forking with
``_posixsubprocess``-like back doors. As root without namespaces, RLIMIT_NPROC is ignored
by the kernel, so a fork bomb is stopped only by the Python guard. Not limited: CPU
affinity, disk usage of the private directory beyond RLIMIT_FSIZE per file, the number
of threads, kernel exploits. Use a container or VM for hostile code.
"""

from __future__ import annotations

import functools
import json
import marshal
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Program", "RunResult", "run_program", "run_many", "isolation", "DEFAULT_HARNESS"]

#: default harness: run the program, then the tests, in one namespace.
DEFAULT_HARNESS = '''
def main(code, tests, data, emit):
    g = {"__name__": "__sandbox__"}
    exec(compile(code, "<program>", "exec"), g)
    if tests:
        exec(compile(tests, "<tests>", "exec"), g)
'''

# The bootstrap runs inside the child before any untrusted code. It reads its config
# (marshalled by the trusted parent) from stdin, then stdin becomes /dev/null. It imports
# as little as possible (no json, pickle, re, enum, ctypes unless needed): interpreter
# start-up is most of the cost of a short run.
_BOOT = r'''
import os, sys
def _boot():
    import _signal, builtins, marshal, resource
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)  # over RLIMIT_FSIZE: OSError, not death
    chunks = []
    while True:
        b = os.read(0, 1 << 20)
        if not b:
            break
        chunks.append(b)
    cfg = marshal.loads(b"".join(chunks)); del chunks
    nul = os.open(os.devnull, os.O_RDONLY); os.dup2(nul, 0); os.close(nul)
    fd, nonce = cfg["result_fd"], cfg["nonce"].encode()
    _write, _exit, enc = os.write, os._exit, _encoder()
    def emit(obj):
        data = nonce + b" " + enc(obj).encode("utf-8", "replace") + b"\n"
        while data:
            data = data[_write(fd, data):]
    tmp = cfg["tmpdir"]
    info = {"event": "start", "fs_readonly": False}
    if cfg["readonly_fs"]:
        try:
            _readonly_fs(tmp)
            info["fs_readonly"] = True
        except Exception as e:
            info["fs_error"] = str(e)[:200]
    for name, val in cfg["limits"].items():
        if val is not None:
            try:
                resource.setrlimit(getattr(resource, name), (val, cfg["hard"].get(name, val)))
            except (ValueError, OSError):
                pass
    sys.path.extend(cfg["paths"])
    hns = {"__name__": "__harness__"}
    exec(compile(cfg["harness"], "<harness>", "exec"), hns)
    if "prepare" in hns:
        hns["prepare"](cfg["data"])
    emit(info)
    _guard(tmp)
    code, tests, data = cfg["code"], cfg["tests"], cfg["data"]
    del cfg
    try:
        hns["main"](code, tests, data, emit)
    except BaseException as e:
        try:
            msg = str(e)[:500]
        except BaseException:
            msg = "<unprintable>"
        emit({"event": "exception", "type": type(e).__name__, "msg": msg})
        _flush(); _exit(1)
    emit({"event": "end"})
    _flush(); _exit(0)

def _encoder():
    # JSON for plain values without importing json (which pulls in re and enum)
    from _json import encode_basestring_ascii as s_
    inf = float("inf")
    def enc(o):
        t = type(o)
        if o is None:
            return "null"
        if o is True:
            return "true"
        if o is False:
            return "false"
        if t is str:
            return s_(o)
        if t is int:
            try:
                return int.__repr__(o)
            except ValueError:  # more digits than int->str allows
                return s_(hex(o))
        if t is float:
            if o != o:
                return "NaN"
            return float.__repr__(o) if -inf < o < inf else ("Infinity" if o > 0 else "-Infinity")
        if t is list or t is tuple:
            return "[" + ",".join([enc(v) for v in o]) + "]"
        if t is dict:
            return "{" + ",".join([s_(k if type(k) is str else str(k)) + ":" + enc(v)
                                   for k, v in o.items()]) + "}"
        return s_(object.__repr__(o))
    return enc

def _flush():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except BaseException:
            pass

def _readonly_fs(tmp):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
    libc.syscall.argtypes = None
    def setattr_(path, flags, set_, clr):
        a = MountAttr(set_, clr, 0, 0)
        r = libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), ctypes.c_char_p(path),
                         ctypes.c_uint(flags), ctypes.byref(a), ctypes.c_size_t(ctypes.sizeof(a)))
        if r != 0:
            raise OSError(ctypes.get_errno(), "mount_setattr " + path.decode())
    t = tmp.encode()
    if libc.mount(t, t, None, ctypes.c_ulong(4096 | 16384), None) != 0:  # MS_BIND|MS_REC
        raise OSError(ctypes.get_errno(), "bind mount")
    setattr_(b"/", 0x8000, 1, 0)   # AT_RECURSIVE, MOUNT_ATTR_RDONLY
    setattr_(t, 0, 0, 1)
    os.chdir(tmp)  # the old cwd still points into the read-only mount

def _guard(tmp):
    import builtins, io
    def deny(name):
        def denied(*a, **k):
            raise PermissionError(name + " is disabled in the sftscale sandbox")
        return denied
    for n in ("kill", "killpg", "fork", "forkpty", "vfork", "system", "popen", "setsid",
              "setpgid", "setpgrp", "setuid", "setgid", "seteuid", "setegid", "setreuid",
              "setresuid", "remove", "unlink", "rmdir", "removedirs",
              "rename", "renames", "replace", "truncate", "ftruncate", "chmod", "fchmod",
              "lchmod", "chown", "fchown", "lchown", "chroot", "chdir", "fchdir", "link",
              "symlink", "mkfifo", "mknod", "posix_spawn", "posix_spawnp",
              "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
              "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp",
              "spawnvpe", "plock", "pidfd_open"):
        if hasattr(os, n):
            setattr(os, n, deny("os." + n))
    builtins.exit = deny("exit"); builtins.quit = deny("quit")
    def p_shutil(m):
        for n in ("rmtree", "move", "chown", "copy", "copy2", "copyfile", "copytree"):
            setattr(m, n, deny("shutil." + n))
    def p_subprocess(m):
        for n in ("Popen", "run", "call", "check_call", "check_output", "getoutput",
                  "getstatusoutput"):
            setattr(m, n, deny("subprocess." + n))
        m._posixsubprocess = None
        sys.modules["_posixsubprocess"] = None
    patches = {"shutil": p_shutil, "subprocess": p_subprocess}
    for name, fn in patches.items():  # patched now if loaded, else when first imported
        if name in sys.modules:
            fn(sys.modules[name])
    class Patcher:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name not in patches:
                return None
            for f in sys.meta_path:
                if f is not cls and hasattr(f, "find_spec"):
                    spec = f.find_spec(name, path, target)
                    if spec is not None:
                        break
            else:
                return None
            inner = spec.loader
            class Loader:
                def create_module(self, spec):
                    return inner.create_module(spec)
                def exec_module(self, module):
                    inner.exec_module(module)
                    patches[name](module)
            spec.loader = Loader()
            return spec
    sys.meta_path.insert(0, Patcher)
    real_open, real_os_open, realpath, fspath = io.open, os.open, os.path.realpath, os.fspath
    root = realpath(tmp)
    def inside(p):
        if isinstance(p, int):
            return True
        r = realpath(fspath(p))
        return r == root or r.startswith(root + os.sep)
    def g_open(file, *a, **k):
        if not inside(file):
            raise PermissionError("open outside the sandbox directory: " + str(file)[:200])
        return real_open(file, *a, **k)
    def g_os_open(path, *a, **k):
        if not inside(path):
            raise PermissionError("os.open outside the sandbox directory: " + str(path)[:200])
        return real_os_open(path, *a, **k)
    builtins.open = io.open = g_open
    os.open = g_os_open
    for m in ("ctypes", "_ctypes", "multiprocessing", "_multiprocessing", "resource",
              "psutil", "_socket", "socket", "pty", "ipdb", "tkinter"):
        sys.modules[m] = None

_boot()
'''

_MAX_OUT = 64 * 1024  # bytes of stdout/stderr kept per run


@dataclass(frozen=True)
class Program:
    """One program to run. ``harness`` is trusted Python source defining
    ``main(code, tests, data, emit)`` (and optionally ``prepare(data)``, run before the
    guard); ``data`` is handed to it and must be plain values (``marshal``-able: None,
    bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset); ``emit(obj)``
    sends a JSON-like event (dicts with str keys, lists, str, numbers, bool, None) back to
    the parent (``RunResult.events``)."""

    code: str
    tests: str = ""
    timeout_s: float = 10.0
    memory_mb: int | None = 2048
    cpu_s: float | None = None  # default: ceil(timeout_s) + 1
    harness: str = DEFAULT_HARNESS
    data: Any = None
    max_file_mb: int = 16
    max_procs: int | None = None  # RLIMIT_NPROC (ignored by the kernel for root)


@dataclass
class RunResult:
    """Outcome of one run.

    status: ``ok`` (the end marker arrived: program and tests finished), ``exception``
    (an uncaught exception, including SystemExit; see ``exc_type``), ``timeout`` (wall
    clock or CPU limit), ``crashed`` (ended without the marker: ``os._exit``, a signal,
    a memory kill...).
    """

    status: str
    returncode: int | None
    wall_s: float
    exc_type: str | None = None
    exc_msg: str | None = None
    events: list = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    isolation: str = "none"
    fs_readonly: bool = False
    cpu_s: float = 0.0  # CPU seconds used by the program and its reaped children
    workdir: str = ""  # the private directory it ran in (deleted when the run returns)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@functools.lru_cache(maxsize=1)
def isolation() -> tuple[str, tuple[str, ...]]:
    """(mode, command prefix) used to start programs: ``ns`` (root namespaces), ``userns``
    (unprivileged user namespace) or ``none``. Set ``SFTSCALE_SANDBOX_NS=0`` to disable."""
    if os.environ.get("SFTSCALE_SANDBOX_NS", "1") == "0":
        return "none", ()
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return "none", ()
    base = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
    for mode, prefix in (("ns", (exe, *base)), ("userns", (exe, "--user", "--map-root-user", *base))):
        try:
            r = subprocess.run([*prefix, "true"], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return mode, prefix
    return "none", ()


@functools.lru_cache(maxsize=1)
def _site_paths() -> tuple[str, ...]:
    """site-packages of this interpreter, so programs may import e.g. numpy (-S skips them)."""
    import site
    paths = [p for p in site.getsitepackages() if os.path.isdir(p)]
    return tuple(paths)


def _child_env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp,
            "TMPDIR": tmp, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def _read_tail(f, limit: int = _MAX_OUT) -> str:
    size = os.fstat(f.fileno()).st_size
    data = os.pread(f.fileno(), min(size, limit), 0)
    s = data.decode("utf-8", "replace")
    return s + (f"\n[... {size - limit} more bytes]" if size > limit else "")


def _parse_events(raw: bytes, nonce: bytes) -> list[dict]:
    out = []
    prefix = nonce + b" "
    for line in raw.split(b"\n"):
        if line.startswith(prefix):
            try:
                obj = json.loads(line[len(prefix):])
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_unreaped(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for exit WITHOUT reaping (the group id stays valid for killpg). True if exited."""
    if hasattr(os, "pidfd_open"):
        import select
        try:
            pfd = os.pidfd_open(proc.pid)
        except OSError:
            pfd = None
        if pfd is not None:
            try:
                p = select.poll()
                p.register(pfd, select.POLLIN)
                return bool(p.poll(max(0, int(timeout * 1000))))
            finally:
                os.close(pfd)
    try:  # fallback: reaps, then the group kill below races only with pid reuse
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def run_program(code: str, timeout_s: float = 10.0, **kw: Any) -> RunResult:
    """Run one program (see ``Program`` for the keyword options) and return its result."""
    return _run(Program(code=code, timeout_s=timeout_s, **kw))


def run_many(programs: Sequence[Program | str], workers: int | None = None) -> list[RunResult]:
    """Run programs in parallel (a thread pool of subprocesses), results in input order."""
    progs = [p if isinstance(p, Program) else Program(code=p) for p in programs]
    if not progs:
        return []
    workers = max(1, min(workers or (os.cpu_count() or 1), len(progs)))
    if workers == 1:
        return [_run(p) for p in progs]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(_run, progs))


def _run(prog: Program) -> RunResult:
    mode, prefix = isolation()
    tmp = tempfile.mkdtemp(prefix="sftscale-sbx-")
    nonce = secrets.token_hex(16)
    cpu = prog.cpu_s if prog.cpu_s is not None else math.ceil(prog.timeout_s) + 1
    mb = 1024 * 1024
    limits = {"RLIMIT_CPU": int(math.ceil(cpu)), "RLIMIT_CORE": 0,
              "RLIMIT_FSIZE": prog.max_file_mb * mb,
              "RLIMIT_AS": prog.memory_mb * mb if prog.memory_mb else None,
              "RLIMIT_NPROC": prog.max_procs}
    hard = {"RLIMIT_CPU": int(math.ceil(cpu)) + 1}  # pid-namespace init ignores SIGXCPU
    files = [tempfile.TemporaryFile() for _ in range(4)]  # stdin cfg, stdout, stderr, results
    cfg_f, out_f, err_f, res_f = files
    proc = None
    t0 = time.perf_counter()
    try:
        cfg = {"result_fd": res_f.fileno(), "nonce": nonce, "tmpdir": tmp, "limits": limits, "hard": hard,
               "paths": list(_site_paths()), "harness": prog.harness, "code": prog.code,
               "tests": prog.tests, "data": prog.data, "readonly_fs": mode != "none"}
        try:
            blob = marshal.dumps(cfg)
        except ValueError as e:
            raise TypeError(f"Program.data must be plain values (marshal: {e})") from None
        cfg_f.write(blob)
        cfg_f.flush()
        cfg_f.seek(0)
        cmd = [*prefix, sys.executable, "-I", "-S", "-B", "-c", _BOOT]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=cfg_f, stdout=out_f, stderr=err_f, cwd=tmp,
                                env=_child_env(tmp), pass_fds=(res_f.fileno(),),
                                start_new_session=True, close_fds=True)
        exited = _wait_unreaped(proc, prog.timeout_s)
        wall = time.perf_counter() - t0
        _kill_group(proc.pid)  # timeout, or strays left behind by a finished program
        try:  # wait4: the rusage includes the program's CPU time (its reaped descendants)
            _, wstatus, ru = os.wait4(proc.pid, 0)
            rc = os.waitstatus_to_exitcode(wstatus)
            proc.returncode = rc
            cpu_used = ru.ru_utime + ru.ru_stime
        except ChildProcessError:  # already reaped by the fallback wait
            rc, cpu_used = proc.wait(), 0.0
        raw = os.pread(res_f.fileno(), os.fstat(res_f.fileno()).st_size, 0)
        events = _parse_events(raw, nonce.encode())
        start = next((e for e in events if e.get("event") == "start"), {})
        exc = next((e for e in events if e.get("event") == "exception"), None)
        ended = any(e.get("event") == "end" for e in events)
        user_events = [e for e in events if e.get("event") not in ("start", "end", "exception")]
        xcpu = rc == -signal.SIGXCPU or cpu_used >= cpu - 0.05
        if not exited:
            status = "timeout"
        elif ended and rc == 0:
            status = "ok"
        elif exc is not None:
            status = "exception"
        elif xcpu:
            status = "timeout"
        else:
            status = "crashed"
        return RunResult(status=status, returncode=None if not exited else rc, wall_s=wall,
                         exc_type=exc.get("type") if exc else None,
                         exc_msg=exc.get("msg") if exc else None, events=user_events,
                         stdout=_read_tail(out_f), stderr=_read_tail(err_f), isolation=mode,
                         fs_readonly=bool(start.get("fs_readonly")), cpu_s=cpu_used,
                         workdir=tmp)
    finally:
        if proc is not None and proc.returncode is None:
            _kill_group(proc.pid)
            proc.wait()
        for f in files:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
