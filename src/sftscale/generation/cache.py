"""Content-addressed cache of generations: (what model, which prompt, how) -> text.

A generation is identified by the *content* that determines it, never by a path:

- ``model``: a dict naming the backend and the hashes of what produced the text (base
  weights hash, adapter weights hash or None, tokenizer hash, dtype, device type...). The
  generator builds it (see ``generator.Generator.identity``);
- ``spec``: the generation parameters (max_new_tokens, stop strings, temperature);
- ``prompt``: the exact prompt string.

So a checkpoint rewritten in place (same path, new weights) gets a new key and never
returns stale text.

Storage: one append-only JSONL file per (model, spec) group under
``<cache_dir>/<g[:2]>/<g>.jsonl``; each line is ``{"k": key, "text": ..., "n_tokens": ...}``.
Lines are appended with a single ``os.write`` on an ``O_APPEND`` descriptor and fsynced per
``put_many``, so concurrent writers on one local filesystem interleave whole lines, and a
crash can at worst leave one torn last line, which readers skip (its prompt is generated
again). Keys are re-derived from the prompt on lookup, so a line can never answer for
another prompt.

Not handled: eviction or size limits (delete the directory to clear it), network
filesystems without atomic appends, locking across machines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ..io import append_jsonl, read_appended_jsonl, sha256_json, sha256_text


def group_key(model: dict, spec: dict) -> str:
    """Hash of the model identity and the generation parameters."""
    return sha256_json({"model": model, "spec": spec, "v": 1})


def prompt_key(group: str, prompt: str) -> str:
    return sha256_text(group + "\0" + prompt)


class GenCache:
    """A directory of JSONL shards. Cheap to create; shards are read lazily."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._loaded: dict[str, dict[str, dict]] = {}

    def _path(self, group: str) -> Path:
        return self.root / group[:2] / f"{group}.jsonl"

    def _shard(self, group: str) -> dict[str, dict]:
        if group not in self._loaded:
            rows: dict[str, dict] = {}
            for r in read_appended_jsonl(self._path(group)):  # a torn line: generated again
                if isinstance(r.get("k"), str) and "text" in r:
                    rows[r["k"]] = r
            self._loaded[group] = rows
        return self._loaded[group]

    def get_many(self, model: dict, spec: dict, prompts: list[str]) -> list[dict | None]:
        """Cached rows (``text``, ``n_tokens``) for each prompt, None where missing."""
        g = group_key(model, spec)
        shard = self._shard(g)
        return [shard.get(prompt_key(g, p)) for p in prompts]

    def put_many(self, model: dict, spec: dict, items: Iterable[tuple[str, str, int]]) -> None:
        """Append (prompt, text, n_tokens) rows; one write, one fsync."""
        g = group_key(model, spec)
        shard = self._shard(g)
        new: list[dict[str, Any]] = [{"k": prompt_key(g, prompt), "text": text, "n_tokens": int(n_tokens)}
                                     for prompt, text, n_tokens in items]
        append_jsonl(self._path(g), new, ensure_ascii=False)
        for row in new:
            shard[row["k"]] = row


__all__ = ["GenCache", "group_key", "prompt_key"]
