"""``Generator``: generate for many prompts with one loaded model, behind a content cache.

``Generator(model, adapter=None, batch_size=None, device=None, cache_dir=None)`` where
``model`` is

- a model reference understood by ``models.load_model`` (toy name, local dir, hub id, GGUF):
  the **transformers backend** (``hf.HFBackend``, a hand-written batched decode loop);
- a ``(model, tokenizer)`` pair already in memory: the same backend;
- ``openai:<base_url>/v1/<served model name>`` (e.g. ``openai:http://127.0.0.1:8000/v1/qwen``):
  an **OpenAI-compatible completions client** for vLLM / TGI / SGLang servers (stdlib HTTP,
  ``remote.OpenAIBackend``);
- ``vllm:<model ref>``: the **vLLM offline engine** with multi-LoRA (``remote.VLLMBackend``,
  imported lazily; not installed on CPU machines, so not tested here).

Every backend follows ``backend.Backend``. ``set_adapter(dir)`` switches adapters on the same
loaded base (``None``: the bare base); ``batch_size`` may be changed between calls;
``generate(prompts, spec, progress)`` reports ``ProgressEvent("generate", done, total)``
counting cached prompts as done.

Caching: with ``cache_dir``, results are stored by content hash (``cache.GenCache``) of base
weights, adapter weights, tokenizer, dtype, device type, prompt and GenSpec
(``identity()``); reruns skip finished prompts and each batch is stored as soon as it is done.

Not handled here: decoding (the backends), scoring (``sftscale.tasks``), results files
(``sftscale.evaluation``), several models per Generator (make one per base model).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Sequence

from ..events import ProgressEvent, ProgressFn
from ..tasks.base import GenSpec
from .backend import Backend, row_seed, spec_dict
from .cache import GenCache
from .hf import HFBackend


class Generator:
    """Generate for many prompts with one loaded model; see the module docstring."""

    def __init__(self, model: Any, adapter: str | os.PathLike | None = None,
                 batch_size: int | None = None, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None, dtype: Any = None,
                 max_adapters: int = 4):
        self.ref: str | None = None
        if isinstance(model, (tuple, list)) and len(model) == 2:
            self.backend: Backend = HFBackend(model[0], model[1], None, batch_size, max_adapters)
        elif isinstance(model, (str, os.PathLike)):
            ref = str(model)
            self.ref = ref
            if ref.startswith("openai:"):
                from .remote import OpenAIBackend

                self.backend = OpenAIBackend(ref, batch_size)
            elif ref.startswith("vllm:"):
                from .remote import VLLMBackend

                self.backend = VLLMBackend(ref[len("vllm:"):], batch_size)
            else:
                from ..models import load_model

                m, tok = load_model(ref, device=device, dtype=dtype)
                self.backend = HFBackend(m, tok, ref, batch_size, max_adapters)
                self.backend.stats["base_loads"] = 1
        else:
            raise TypeError("model must be a reference string or a (model, tokenizer) pair")
        self.cache = GenCache(cache_dir) if cache_dir is not None else None
        self.last: dict[str, Any] = {}
        if self.cache is not None:
            self.identity()  # pin the base hash before any adapter is injected into the model
        if adapter is not None:
            self.set_adapter(adapter)

    @property
    def tokenizer(self) -> Any:
        return self.backend.tok

    @property
    def model(self) -> Any:
        return getattr(self.backend, "model", None)

    @property
    def adapter(self) -> Any:
        return self.backend.adapter

    @property
    def stats(self) -> dict:
        return self.backend.stats

    @property
    def batch_size(self) -> int | None:
        """Rows per batch the backend uses (None: it chooses); may be set between calls."""
        return self.backend.batch_size

    @batch_size.setter
    def batch_size(self, n: int | None) -> None:
        self.backend.batch_size = n

    def set_adapter(self, path: str | os.PathLike | None) -> None:
        """Switch to the adapter at ``path`` (None: the bare base) without reloading the base."""
        self.backend.set_adapter(path)

    def identity(self) -> dict:
        """What the generations depend on (hashes, not paths): the cache key's model part."""
        return self.backend.identity()

    def describe(self) -> dict:
        d = self.backend.describe()
        d.update(model=self.ref, adapter=str(self.adapter) if self.adapter is not None else None)
        return d

    def generate(self, prompts: Sequence[str], spec: GenSpec = GenSpec(),
                 progress: ProgressFn | None = None,
                 samples: Sequence[int] | None = None) -> list[str]:
        """One completion per prompt, in input order. Cached prompts are not regenerated.

        ``samples``: each row's sample index (default 0). When ``spec.sampling``, row i is
        drawn with its own seed ``row_seed(spec.seed, prompt, samples[i])`` and cached under
        (prompt, index), so a prompt repeated with indices 0..n-1 gives n reproducible
        samples; greedy rows of one prompt are generated once and shared."""
        prompts = list(prompts)
        samples = [0] * len(prompts) if samples is None else [int(x) for x in samples]
        if len(samples) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(samples)} sample indices")
        keys = [f"{p}\0#{x}" if spec.sampling else p for p, x in zip(prompts, samples)]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        rows = list(first.values())  # one row per distinct (prompt[, sample]), first occurrence
        t0 = time.perf_counter()
        out: dict[int, str] = {}
        ntok: dict[int, int] = {}
        todo = rows
        ident: dict = {}  # the cache key's model and generation parts (with a cache)
        sd: dict = {}
        if self.cache is not None:
            ident, sd = self.identity(), spec_dict(spec)
            for i, h in zip(rows, self.cache.get_many(ident, sd, [keys[i] for i in rows])):
                if h is not None:
                    out[i], ntok[i] = h["text"], int(h.get("n_tokens", 0))
            todo = [i for i in rows if i not in out]
        n_cached = len(rows) - len(todo)
        gen_tokens = 0

        def on_batch(local_idx: list[int], res: list[tuple[str, int]]) -> None:
            nonlocal gen_tokens
            done = []
            for li, (text, n) in zip(local_idx, res):
                gi = todo[li]
                out[gi], ntok[gi] = text, n
                gen_tokens += n
                done.append((keys[gi], text, n))
            if self.cache is not None:
                self.cache.put_many(ident, sd, done)

        if todo:
            wrapped = None
            if progress is not None:
                progress(ProgressEvent("generate", n_cached, len(rows)))
                wrapped = _offset(progress, n_cached, len(rows))
            seeds = ([row_seed(spec.seed, prompts[i], samples[i]) for i in todo]
                     if spec.sampling else None)
            kw = {"seeds": seeds} if seeds is not None else {}
            self.backend.generate([prompts[i] for i in todo], spec, wrapped, on_batch, **kw)
        elif progress is not None:
            progress(ProgressEvent("generate", len(rows), len(rows)))
        wall = time.perf_counter() - t0
        src = [first[k] for k in keys]
        self.last = {"n_prompts": len(prompts), "n_cached": n_cached, "generated_tokens": gen_tokens,
                     "wall_s": wall, "tokens_per_s": gen_tokens / wall if wall > 0 and gen_tokens else 0.0,
                     "n_tokens": [ntok.get(j, 0) for j in src]}
        return [out.get(j, "") for j in src]


def _offset(progress: ProgressFn, n_cached: int, total: int) -> ProgressFn:
    """A backend's events over the uncached prompts, as events over all ``total`` prompts."""
    def fn(ev: ProgressEvent) -> None:
        progress(replace(ev, done=n_cached + ev.done, total=total))
    return fn


__all__ = ["Generator"]
