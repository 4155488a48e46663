"""The judge's answer cache: ``DIR/judge/cache.jsonl``, append-only, one line per answer.

Key: sha256 of (the request's content sha, the judge's identity, ``PROMPT_VERSION``). The
content sha covers everything the request shows the judge (task, prompt, reference, response),
so the same response to two different questions is asked twice, and a rerun with the same
judge asks nothing that is already answered.

Only answers are cached: ``ok`` and ``unparsed`` (the judge answered; asking again gives the
same with greedy decoding). ``failed`` requests (transport errors after every retry) are not,
so a rerun asks them again.

Line safety: ``io.append_jsonl`` (one ``write`` of whole lines in append mode, fsynced; a
torn last line gets its newline first) and ``io.read_appended_jsonl`` (a last line cut short
by a crash, or a line that is not JSON, is skipped). Two processes appending at once each
write whole lines (POSIX ``O_APPEND``); the later duplicate of a key is ignored.

Not handled: eviction, compaction, sharing one cache between run directories (pass the same
``path`` to do so).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..io import append_jsonl, read_appended_jsonl, sha256_json


def cache_key(content_sha: str, judge: dict, prompt_version: str) -> str:
    return sha256_json({"content": content_sha, "judge": judge, "prompt": prompt_version})


class JudgeCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        for rec in read_appended_jsonl(self.path):  # a line cut short by a crash: not an answer
            if isinstance(rec.get("key"), str):
                self.entries.setdefault(rec["key"], rec)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Append one answer (a dict with ``status``, ``label``, ``fine``, ``reason``, ``raw``)."""
        rec = {"key": key, **record}
        with self._lock:
            if key in self.entries:
                return
            append_jsonl(self.path, [rec], ensure_ascii=False, sort_keys=True)
            self.entries[key] = rec


__all__ = ["JudgeCache", "cache_key"]
