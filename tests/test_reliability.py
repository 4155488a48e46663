"""Issue 14's findings, each reproduced through the real command line: a user's mistake or a
damaged file gives one clear error line (what, where) and exit 2, never a traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

SFTSCALE = [sys.executable, "-m", "sftscale.cli"]


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*SFTSCALE, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def user_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert exit 2, no traceback, and every needle in the error text; return the text."""
    err = r.stderr + r.stdout
    assert "Traceback" not in err, err
    assert r.returncode == 2, (r.returncode, err)
    for n in needles:
        assert n in err, (n, err)
    return err


# --- finding 7: damaged responses files ----------------------------------------------------
def test_truncated_gzip_responses(tmp_path):
    good = gzip.compress(b'{"id": "1", "response": "#### 3"}\n' * 50)
    f = tmp_path / "resp.jsonl.gz"
    f.write_bytes(good[: len(good) // 2])
    user_error(cli("score", "--task", "gsm8k", "--responses", f), str(f), "damaged gzip data")


def test_binary_responses(tmp_path):
    f = tmp_path / "resp.jsonl"
    f.write_bytes(bytes(range(128, 256)) * 4)
    user_error(cli("score", "--task", "gsm8k", "--responses", f), str(f), "not UTF-8")


def test_gzip_without_gz_suffix_is_read(tmp_path):
    f = tmp_path / "resp.jsonl"
    f.write_bytes(gzip.compress(b'{"id": "gsm8k/test/0", "response": "The answer is 18.\\n#### 18"}\n'))
    r = cli("score", "--task", "gsm8k", "--responses", f)
    assert r.returncode == 0, r.stderr
    assert '"accuracy"' in r.stdout
