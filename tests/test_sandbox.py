"""The sandbox: programs run, tests gate the end marker, and hostile programs neither pass
nor leave the machine changed (canary files, canary env var, parent alive, no strays)."""

from __future__ import annotations

import os
import socket
import tempfile
import time

import psutil

from sftscale.tasks import sandbox
from sftscale.tasks.sandbox import Program, run_many, run_program

SECRET = "sftscale-canary-secret-4711"


def _strays(workdirs: list[str]) -> list[str]:
    """Sandbox processes still alive: children of this process, or any process whose
    working directory is one of the runs' private directories."""
    me = psutil.Process()
    out = []
    for p in me.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:  # ended meanwhile
            continue
        # multiprocessing's resource tracker lives as long as pytest once any earlier test
        # used a spawn pool (study workers, knowledge stage.workers); it is not a sandbox's
        if "multiprocessing.resource_tracker" not in cmd:
            out.append(f"{p.pid} {p.name()}")
    for p in psutil.process_iter(["pid", "cwd"]):
        cwd = p.info.get("cwd") or ""
        if any(cwd.startswith(w) for w in workdirs):
            out.append(f"{p.pid} {cwd}")
    return out


def test_program_and_tests_run_and_output_is_captured():
    r = run_program("x = 6 * 7\nprint('hello', x)", tests="assert x == 42")
    assert r.status == "ok" and r.ok, r
    assert r.stdout == "hello 42\n"
    bad = run_program("x = 6 * 7", tests="assert x == 41, 'nope'")
    assert bad.status == "exception" and bad.exc_type == "AssertionError" and bad.exc_msg == "nope"


def test_run_many_keeps_order_and_runs_in_parallel():
    progs = [Program(code=f"import time\ntime.sleep(0.5)\nassert {i} % 2 == 0") for i in range(4)]
    t0 = time.perf_counter()
    res = run_many(progs, workers=4)
    wall = time.perf_counter() - t0
    assert [r.status for r in res] == ["ok", "exception", "ok", "exception"]
    assert wall < 4 * 0.5 + 1.5  # sleeps overlap even on 2 cores


def test_private_dir_is_writable_and_removed_afterwards():
    r = run_program("import os\nopen('f.txt', 'w').write('x' * 10)\nprint(os.getcwd())",
                    tests="assert open('f.txt').read() == 'x' * 10")
    assert r.ok, r
    assert r.stdout.strip() == os.path.realpath(r.workdir)
    assert r.workdir and not os.path.exists(r.workdir)


def test_timeout_and_cpu_limit():
    r = run_program("while True:\n    pass", timeout_s=1.0)
    assert r.status == "timeout" and r.wall_s < 5
    r = run_program("while True:\n    pass", timeout_s=30.0, cpu_s=1)
    assert r.status == "timeout" and r.wall_s < 25


def test_memory_limit():
    r = run_program("x = bytearray(3 * 1024 ** 3)", memory_mb=512)
    assert r.status == "exception" and r.exc_type == "MemoryError"


def test_hostile_programs_do_not_pass_and_leave_no_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTSCALE_TEST_SECRET", SECRET)
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    shared_canary = os.path.join(tempfile.gettempdir(), f"sftscale-canary-{os.getpid()}.txt")
    with open(shared_canary, "w") as f:
        f.write("intact")
    os.chmod(shared_canary, 0o666)
    evil_new = os.path.join(tempfile.gettempdir(), f"sftscale-evil-{os.getpid()}.txt")
    ppid, c, sc = os.getpid(), str(canary), shared_canary
    check = "assert True"  # the tests that a hostile program tries to skip or fake
    hostile = {
        "sys.exit(0)": "import sys\nsys.exit(0)",
        "os._exit(0)": "import os\nos._exit(0)",
        "raise SystemExit": "raise SystemExit(0)",
        "KeyboardInterrupt": "raise KeyboardInterrupt",
        "BaseException": "raise BaseException('x')",
        "exit()": "exit()",
        "redefine exit": "import builtins\nbuiltins.exit = lambda *a: None\nimport os\nos._exit(0)",
        "kill self": "import signal, os\nos.kill(os.getpid(), signal.SIGKILL)",
        "fake marker on all fds": ("import os\nfor fd in range(1, 64):\n    try:\n"
                                   "        os.write(fd, b'0' * 32 + b' {\"event\": \"end\"}\\n')\n"
                                   "    except OSError:\n        pass\nos._exit(0)"),
        "infinite loop": "while True:\n    pass",
        "fork bomb": "import os\nwhile True:\n    os.fork()",
        "subprocess": "import subprocess\nsubprocess.Popen(['sleep', '100'])",
        "os.system": "import os\nos.system('sleep 100 &')",
        "ctypes fork": "import ctypes\nctypes.CDLL(None).fork()",
        "memory bomb": "x = []\nwhile True:\n    x.append(' ' * 10 ** 7)",
        "delete canary": f"import os\nos.remove({c!r})",
        "rmtree canary dir": f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        "overwrite canary": f"open({c!r}, 'w').write('pwned')",
        "overwrite shared canary": f"open({sc!r}, 'w').write('pwned')",
        "pathlib unlink": f"import pathlib\npathlib.Path({sc!r}).unlink()",
        "write new file outside": f"open({evil_new!r}, 'w').write('x')",
        "socket": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
        "read env secret": "import os\nassert 'SFTSCALE_TEST_SECRET' in os.environ",
        "read parent environ": f"assert b'{SECRET}' in open('/proc/{ppid}/environ', 'rb').read()",
        "signal parent": f"import os, signal\nos.kill({ppid}, signal.SIGTERM)",
        "signal getppid": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "killpg parent": f"import os, signal\nos.killpg(os.getpgid({ppid}), signal.SIGTERM)",
    }
    # a wrong f that tries to neutralise the check function the tests define after it
    hostile["redefine check"] = ("def f(x):\n    return 0\ndef check(c):\n    pass\n"
                                 "import builtins\nbuiltins.check = check")
    tests = {"redefine check": "def check(c):\n    assert c(1) == 2\ncheck(f)"}
    progs = [Program(code=code, tests=tests.get(name, check), timeout_s=3.0, memory_mb=512)
             for name, code in hostile.items()]
    results = run_many(progs, workers=2)
    for name, r in zip(hostile, results):
        assert not r.ok, f"{name}: {r}"
        assert SECRET not in r.stdout + r.stderr, name
    # the machine is as it was
    assert canary.read_text() == "intact"
    with open(shared_canary) as f:
        assert f.read() == "intact"
    assert not os.path.exists(evil_new)
    workdirs = [r.workdir for r in results]
    assert _strays(workdirs) == []
    assert not any(os.path.exists(w) for w in workdirs)
    os.unlink(shared_canary)


def test_guard_bypasses_are_stopped_by_namespaces(tmp_path):
    """Undoing the Python guard still meets the read-only filesystem and the empty network
    namespace, where unshare can create them (on other machines only the guard stands)."""
    mode, _ = sandbox.isolation()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    shared = os.path.join(tempfile.gettempdir(), f"sftscale-canary2-{os.getpid()}.txt")
    with open(shared, "w") as f:
        f.write("intact")
    try:
        r1 = run_program(f"import _io\n_io.FileIO({shared!r}, 'w').write(b'pwned')")
        r2 = run_program("import sys\ndel sys.modules['_socket']\nimport _socket\n"
                         f"s = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))")
        try:
            conn, _ = srv.accept()
            conn.close()
            connected = True
        except OSError:
            connected = False
        with open(shared) as f:
            content = f.read()
        if mode != "none":
            assert r1.fs_readonly and r1.status == "exception" and content == "intact"
            assert r2.status == "exception" and not connected
        else:  # documented limitation: the Python-level guard alone can be undone
            assert r1.isolation == "none"
    finally:
        srv.close()
        os.unlink(shared)


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SFTSCALE_TEST_SECRET", SECRET)
    r = run_program("import os, json\nprint(json.dumps(dict(os.environ)))")
    assert r.ok and SECRET not in r.stdout and "SFTSCALE_TEST_SECRET" not in r.stdout


def test_harness_events_and_nonce(tmp_path):
    harness = ("def main(code, tests, data, emit):\n"
               "    g = {}\n    exec(code, g)\n    emit({'value': g['f'](data)})\n")
    r = run_program("def f(x):\n    return x * 2", harness=harness, data=21)
    assert r.ok and r.events == [{"value": 42}]
    # the program prints something that looks like an event: it is not one
    r = run_program("print('{\"value\": 1}')\ndef f(x):\n    return 0", harness=harness, data=1)
    assert r.events == [{"value": 0}]


def test_background_processes_are_killed_after_the_run():
    """A trusted harness starts background processes before the guard (as a program could
    through a hole in it): the process-group kill and the PID namespace end them all."""
    mode, _ = sandbox.isolation()
    harness = ("import subprocess\n"
               "def prepare(data):\n"
               "    subprocess.Popen(['sleep', '60'])\n"
               "    if data:\n"
               "        subprocess.Popen(['sleep', '61'], start_new_session=True)\n"
               "def main(code, tests, data, emit):\n"
               "    exec(code, {})\n")
    res = run_many([Program(code="x = 1", harness=harness, data=mode != "none"),
                    Program(code="import time\ntime.sleep(60)", harness=harness,
                            data=mode != "none", timeout_s=1.0)], workers=2)
    assert [r.status for r in res] == ["ok", "timeout"]
    time.sleep(0.2)
    assert _strays([r.workdir for r in res]) == []
