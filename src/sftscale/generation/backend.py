"""The generation backend protocol, and the two helpers every backend shares.

A backend turns prompts into completions for one loaded model: ``hf.HFBackend`` (transformers,
its own batched decode loop), ``remote.OpenAIBackend`` (an OpenAI-compatible server) and
``remote.VLLMBackend`` (vLLM's offline engine). ``generator.Generator`` picks one from the model
reference and adds the content cache on top; a new backend implements ``Backend`` and gets a
prefix in ``Generator.__init__`` (docs/architecture.md).

Contract of ``Backend.generate(prompts, spec, progress, on_batch, seeds=None)``: every prompt
gets exactly one ``on_batch(indices, [(text, n_tokens), ...])`` call (indices into
``prompts``, any order, in as many calls as the backend likes; text already cut with
``truncate_at_stop``), and after each such call ``progress(ProgressEvent("generate", done,
len(prompts)))`` when given. When ``spec.sampling``, ``seeds`` gives one seed per prompt
(``row_seed``); a backend that can seed rows on their own uses it, so a prompt's sample is
the same in any batch.

Not handled here: caching (``generator.Generator``), checkpoint identity (``checkpoint``),
choosing a backend from a reference (``generator``).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Callable, Protocol, Sequence

from ..events import ProgressEvent, ProgressFn
from ..io import sha256_text
from ..tasks.base import GenSpec

#: ``on_batch(indices, [(text, n_tokens), ...])``: finished prompts, reported as they finish
OnBatch = Callable[[list[int], list[tuple[str, int]]], None]


class Backend(Protocol):
    """What ``Generator`` needs of a backend.

    ``tok`` is the tokenizer (None for a server that keeps its own); ``adapter`` the active
    adapter (path or served name, None for the base); ``stats`` counters such as
    ``base_loads``, ``adapter_loads``, ``full_loads``; ``batch_size`` the requested rows per
    batch (None: the backend chooses), settable between calls."""

    name: str
    tok: Any
    adapter: Any
    stats: dict[str, int]
    batch_size: int | None

    def identity(self) -> dict:
        """What the generations depend on (hashes, not paths): the cache key's model part."""

    def set_adapter(self, path: str | os.PathLike | None) -> None:
        """Switch to an adapter (a checkpoint dir, or a served name); None: the bare base."""

    def generate(self, prompts: list[str], spec: GenSpec, progress: ProgressFn | None,
                 on_batch: OnBatch, seeds: list[int] | None = None) -> None:
        """Complete every prompt; report through ``on_batch`` and ``progress`` (module doc)."""

    def describe(self) -> dict:
        """``backend``, ``device``, ``batch_size`` ... for the results file's ``config``."""


def report(progress: ProgressFn | None, done: int, total: int) -> None:
    """Send one ``generate`` progress event, if anyone listens."""
    if progress is not None:
        progress(ProgressEvent("generate", done, total))


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string (lm-eval's rule)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def spec_dict(spec: GenSpec) -> dict:
    """A GenSpec as the JSON dict the cache keys on (``stop`` as a list).

    Greedy specs give exactly the dict they gave before sampling existed (max_new_tokens,
    stop, temperature), so greedy cache keys never change; sampling specs add ``top_p``,
    ``seed`` and the sampler's version. ``n`` is never in it: the cache keys each sample by
    its index (``generator.Generator``)."""
    d = asdict(spec)
    d["stop"] = list(d["stop"])
    for k in ("top_p", "n", "seed"):
        d.pop(k, None)
    if spec.sampling:
        d.update(top_p=spec.top_p, seed=spec.seed, sampler="row-seeded/v1")
    return d


def row_seed(seed: int, prompt: str, sample: int) -> int:
    """The seed of one (prompt, sample index) row: 63 bits of sha256(seed, sample, prompt), so
    a row's draws depend on nothing else (not its batch, position or neighbours)."""
    return int(sha256_text(f"{int(seed)}\0{int(sample)}\0{prompt}")[:16], 16) >> 1


__all__ = ["Backend", "OnBatch", "report", "row_seed", "spec_dict", "truncate_at_stop"]
