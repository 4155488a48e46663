"""Batched generation for evaluation: one loaded base, swappable adapters, cached results.

``Generator(model, adapter=None, batch_size=None, device=None, cache_dir=None)`` where
``model`` is

- a model reference understood by ``models.load_model`` (toy name, local dir, hub id, GGUF):
  the **transformers backend**, a hand-written greedy decode loop (below);
- a ``(model, tokenizer)`` pair already in memory: the same backend;
- ``openai:<base_url>/v1/<served model name>`` (e.g. ``openai:http://127.0.0.1:8000/v1/qwen``):
  an **OpenAI-compatible completions client** for vLLM / TGI / SGLang servers (stdlib HTTP,
  ``genremote.py``);
- ``vllm:<model ref>``: the **vLLM offline engine** with multi-LoRA (``genremote.py``, imported
  lazily; not installed on CPU machines, so not tested here).

Transformers backend, per batch: prompts are tokenised one by one (the tokenizer adds its
special tokens, e.g. BOS, unless the prompt already starts with the BOS text: the same rule as
lm-evaluation-harness), sorted by length (longest first), left-padded, prefilled, then
decoded one token at a time with a ``DynamicCache``. A row that emits EOS, hits a stop string
or reaches ``max_new_tokens`` is DROPPED from the batch (``Cache.batch_select_indices``), so
finished rows cost nothing, and leading cache columns that became padding for every remaining
row are cut. Continuous batching: when a quarter of the batch is free, the next queued prompts
are prefilled as a group and merged into the running batch (caches left-padded with masked
zeros), so the batch stays full until the queue is empty. Position ids follow the attention mask (as ``model.generate``
does), so padding does not move positions: greedy output is the same for every batch size in
fp32 on CPU (tests/test_generate.py checks 1 vs 32). In bf16 on GPU, padding and batch
composition change reduction order, and an argmax that is a near-tie can flip; compare
across batch sizes only in fp32. Sampling (``temperature > 0``) uses a torch generator seeded
with 0 per batch; its draws depend on batch composition.

Why not ``model.generate``: it keeps finished rows in the batch until the longest row ends,
cannot refill a batch, and decodes every row's tail at every step for stop strings; the loop
here is ~200 lines; measurements in docs/notes/generate.md
(benchmarks/bench_generate_vs_lmeval.py).

Adapters: ``set_adapter(dir)`` on a peft adapter directory (``adapter_config.json``) loads
it once into the SAME base object (peft ``PeftModel.from_pretrained`` the first time,
``load_adapter`` after) and switches with ``set_adapter``; ``set_adapter(None)`` runs the
base with adapters disabled. At most ``max_adapters`` stay loaded (oldest deleted). A
directory with full weights (``config.json`` + safetensors) replaces the model instead.

Caching: with ``cache_dir``, results are stored by content hash (``gencache.py``) of base
weights, adapter weights, tokenizer, dtype, device type, prompt and GenSpec; reruns skip
finished prompts and each batch is stored as soon as it is done.

Not handled: merging into caches other than plain ``DynamicLayer`` ones (sliding-window
models fall back to static batches that only shrink), prompt caching across rows, beam search, models whose caches cannot select batch rows (linear-attention
hybrids), multi-GPU (use the vLLM or server backends), token-level stop sequences other
than EOS ids.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from .cache import GenCache
from ..io import InputError, sha256_json, sha256_text
from ..tasks.base import GenSpec

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- helpers
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
    d = asdict(spec)
    d["stop"] = list(d["stop"])
    return d


def checkpoint_kind(path: str | os.PathLike) -> str:
    """``lora`` (peft adapter dir), ``full`` (config.json + weights) or raise InputError."""
    p = Path(path)
    if (p / "adapter_config.json").exists():
        return "lora"
    if (p / "config.json").exists():
        return "full"
    if (p / "ckpt").is_dir():
        return checkpoint_kind(p / "ckpt")
    raise InputError(p, "not a checkpoint: no adapter_config.json or config.json", field="adapter")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A cell dir may be given for its ``ckpt/``; return the directory holding the weights."""
    p = Path(path)
    if not (p / "adapter_config.json").exists() and not (p / "config.json").exists() \
            and (p / "ckpt").is_dir():
        return p / "ckpt"
    return p


def checkpoint_hash(path: str | os.PathLike) -> str:
    """Content hash of an adapter or full checkpoint: weight files plus adapter config."""
    from ..models import weights_hash

    p = resolve_checkpoint(path)
    parts = {"weights": weights_hash(p)}
    cfg = p / "adapter_config.json"
    if cfg.exists():
        parts["adapter_config"] = sha256_text(cfg.read_text(encoding="utf-8"))
    return sha256_json(parts)


def _tokenizer_hash(tok: Any) -> str:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = json.dumps(sorted(tok.get_vocab().items()))
    extra = {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token}
    return sha256_text(body + json.dumps(extra, sort_keys=True))


def _state_hash(model: Any) -> str:
    """Hash of an in-memory model's tensors (used only for models not loaded from a path)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- transformers
class HFBackend:
    """Greedy/sampled decoding over ``model.forward`` with a KV cache (see module doc)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, ref: str | None, batch_size: int | None,
                 max_adapters: int = 4):
        import torch

        self.model, self.tok, self.ref = model, tokenizer, ref
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.batch_size = batch_size
        self.max_adapters = max_adapters
        self.adapter: Path | None = None
        self.adapter_hash: str | None = None
        self._adapters: OrderedDict[str, str] = OrderedDict()  # hash -> peft adapter name
        self._base_hash: str | None = None
        self._tok_hash: str | None = None
        self.stats = {"base_loads": 0, "adapter_loads": 0, "full_loads": 0, "trimmed_columns": 0,
                      "merged_groups": 0}
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tok.eos_token_id is not None:
            ids.append(self.tok.eos_token_id)
        self.eos_ids = set(ids)
        self._torch = torch

    # ---- identity for the cache
    def identity(self) -> dict:
        if self._base_hash is None:
            h = None
            if self.ref is not None:
                from ..models import model_weights_hash

                try:
                    h = model_weights_hash(self.ref)
                except (FileNotFoundError, InputError):
                    h = None
            self._base_hash = h or (f"ref:{self.ref}" if self.ref and "/" in self.ref
                                    and not Path(self.ref).exists() else _state_hash(self.model))
        if self._tok_hash is None:
            self._tok_hash = _tokenizer_hash(self.tok)
        return {"backend": "hf", "base": self._base_hash, "adapter": self.adapter_hash,
                "tokenizer": self._tok_hash, "dtype": str(self.dtype).replace("torch.", ""),
                "device": self.device.type, "rules": "bos-unless-prefixed/v1"}

    # ---- adapters
    def set_adapter(self, path: str | os.PathLike | None) -> None:
        if path is None:
            self.adapter, self.adapter_hash = None, None
            return
        p = resolve_checkpoint(path)
        kind = checkpoint_kind(p)
        h = checkpoint_hash(p)
        if kind == "full":
            from transformers import AutoModelForCausalLM

            m = AutoModelForCausalLM.from_pretrained(str(p), dtype=self.dtype).to(self.device).eval()
            self.model, self._adapters = m, OrderedDict()
            self._base_hash, self.adapter, self.adapter_hash = h, None, None
            self.stats["full_loads"] += 1
            return
        from peft import PeftModel

        if h not in self._adapters:
            name = f"a{h[:16]}"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(p), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(p), adapter_name=name,
                                                       is_trainable=False)
            self._adapters[h] = name
            self.stats["adapter_loads"] += 1
            while len(self._adapters) > self.max_adapters:
                old_h, old = next(iter(self._adapters.items()))
                if old_h == h:
                    break
                self._adapters.pop(old_h)
                self.model.delete_adapter(old)
        self._adapters.move_to_end(h)
        self.model.set_adapter(self._adapters[h])
        self.model.eval()
        self.adapter, self.adapter_hash = p, h

    def _context(self):
        import contextlib

        if self.adapter is None and self._adapters:  # adapters we attached: run the bare base
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    # ---- batching
    def encode(self, prompt: str) -> list[int]:
        bos = self.tok.bos_token
        add = not (bos and prompt.startswith(bos))
        ids = list(self.tok(prompt, add_special_tokens=add)["input_ids"])
        if not ids:  # an empty prompt and no BOS: start from EOS, as a document boundary
            ids = [self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id]
        return ids

    def auto_batch_size(self, max_len: int) -> int:
        """The ``batch_size`` flag, else as many rows as fit: on CUDA half the free memory
        (up to 256 rows); on CPU a quarter of the available RAM, up to 64 rows (a CPU decode
        step costs nearly the same for 16 or 64 rows, so wider batches mean fewer steps;
        past 64 the gain stops: docs/notes/generate.md)."""
        if self.batch_size:
            return self.batch_size
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        heads = getattr(cfg, "num_attention_heads", 16)
        kvh = getattr(cfg, "num_key_value_heads", None) or heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        per_tok = 2 * cfg.num_hidden_layers * kvh * hd * self._torch.finfo(self.dtype).bits // 8
        per_seq = max_len * (per_tok + 16 * cfg.hidden_size) + 4 * cfg.vocab_size
        if self.device.type == "cuda":
            free, _ = self._torch.cuda.mem_get_info(self.device)
            return int(max(1, min(256, 0.5 * free // per_seq)))
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not POSIX: assume 4 GiB free
            free = 4 << 30
        return int(max(1, min(64, 0.25 * free // per_seq)))

    def generate(self, prompts: list[str], spec: GenSpec, progress: Progress | None,
                 on_batch: Callable[[list[int], list[tuple[str, int]]], None]) -> None:
        """Continuous batching: rows leave when done; queued prompts (longest first) are
        prefilled and merged into the running batch when a quarter of it is free."""
        torch = self._torch
        enc = [self.encode(p) for p in prompts]
        max_pos = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if max_pos:
            keep_len = max(1, max_pos - spec.max_new_tokens)
            enc = [e[-keep_len:] for e in enc]
        queue = sorted(range(len(enc)), key=lambda i: (-len(enc[i]), i))
        if not queue:
            return
        bs = self.auto_batch_size(len(enc[queue[0]]) + spec.max_new_tokens)
        self.last_batch_size = bs
        stops = [s for s in spec.stop if s]
        window = 2 * max((len(s) for s in stops), default=0) + 4
        sampler = None
        if spec.temperature and spec.temperature > 0:
            sampler = torch.Generator(device=self.device).manual_seed(0)
        gen: dict[int, list[int]] = {}
        done_rows: list[int] = []
        n_done = 0

        def pick(logits: Any) -> Any:
            if sampler is None:
                return logits.argmax(-1)
            probs = torch.softmax(logits.float() / spec.temperature, -1)
            return torch.multinomial(probs, 1, generator=sampler).squeeze(-1)

        def advance(rows: list[int], nxt: Any) -> list[int]:
            """Append the chosen tokens; return the positions (in ``rows``) still running."""
            keep: list[int] = []
            for j, t in enumerate(nxt.tolist()):
                if t in self.eos_ids:
                    done_rows.append(rows[j])
                    continue
                g = gen[rows[j]]
                g.append(t)
                if len(g) < spec.max_new_tokens:
                    keep.append(j)
                else:
                    done_rows.append(rows[j])
            if stops and keep:  # one batched decode of each row's tail
                tails = self.tok.batch_decode([gen[rows[j]][-window:] for j in keep],
                                              skip_special_tokens=True)
                still = []
                for j, tail in zip(keep, tails):
                    (done_rows.append(rows[j]) if any(s in tail for s in stops) else still.append(j))
                keep = still
            return keep

        def flush(force: bool) -> None:
            nonlocal n_done
            if done_rows and (force or len(done_rows) >= bs):
                res = []
                for r in done_rows:
                    text = self.tok.decode(gen[r], skip_special_tokens=True)
                    res.append((truncate_at_stop(text, stops), len(gen[r])))
                on_batch(list(done_rows), res)
                n_done += len(done_rows)
                done_rows.clear()
                if progress is not None:
                    progress(n_done, len(enc))

        with self._context(), torch.inference_mode():
            rows: list[int] = []
            cache = attn = last = nxt = None
            while queue or rows:
                free = bs - len(rows)
                if queue and (not rows or (free >= max(1, bs // 4) and self._mergeable(cache))):
                    new, queue = queue[:free], queue[free:]
                    for r in new:
                        gen[r] = []
                    c2, a2, l2, logits = self._prefill([enc[r] for r in new])
                    n2 = pick(logits)
                    k2 = advance(new, n2)
                    if k2:
                        sel = torch.tensor(k2, device=self.device)
                        if len(k2) < len(new):
                            c2.batch_select_indices(sel)
                            a2, l2, n2 = a2[sel], l2[sel], n2[sel]
                        new = [new[j] for j in k2]
                        if rows:
                            cache, attn = self._merge(cache, attn, c2, a2)
                            self.stats["merged_groups"] += 1
                            last, nxt = torch.cat([last, l2]), torch.cat([nxt, n2])
                            rows = rows + new
                        else:
                            cache, attn, last, nxt, rows = c2, a2, l2, n2, new
                    flush(False)
                    if not rows:
                        continue
                attn = torch.cat([attn, attn.new_ones((len(rows), 1))], dim=1)
                last = last + 1
                logits = self.model(input_ids=nxt[:, None], attention_mask=attn,
                                    position_ids=last[:, None], cache=cache, use_cache=True,
                                    **self._kw).logits[:, -1, :]
                nxt = pick(logits)
                keep = advance(rows, nxt)
                if len(keep) < len(rows):
                    if not keep:
                        rows, cache = [], None
                    else:
                        sel = torch.tensor(keep, device=self.device)
                        cache.batch_select_indices(sel)
                        attn, last, nxt = attn[sel], last[sel], nxt[sel]
                        rows = [rows[j] for j in keep]
                        attn = self._trim_left_padding(cache, attn)
                flush(False)
        flush(True)

    _kw: dict = {"logits_to_keep": 1}

    def _prefill(self, ids_list: list[list[int]]) -> tuple[Any, Any, Any, Any]:
        """Left-padded prefill of a group: (cache, attention mask, last positions, logits)."""
        torch = self._torch
        from transformers import DynamicCache

        dev, B = self.device, len(ids_list)
        L = max(len(x) for x in ids_list)
        input_ids = torch.full((B, L), self.tok.pad_token_id, dtype=torch.long)
        attn = torch.zeros((B, L), dtype=torch.long)
        for r, x in enumerate(ids_list):
            input_ids[r, L - len(x):] = torch.tensor(x, dtype=torch.long)
            attn[r, L - len(x):] = 1
        input_ids, attn = input_ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:
            cache = DynamicCache()
        try:
            out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                             cache=cache, use_cache=True, **self._kw)
        except TypeError:  # a model without logits_to_keep
            self._kw = {}
            out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                             cache=cache, use_cache=True)
        return cache, attn, pos[:, -1], out.logits[:, -1, :]

    @staticmethod
    def _mergeable(cache: Any) -> bool:
        """Rows can join a running batch only when every cache layer is a plain DynamicLayer."""
        from transformers.cache_utils import DynamicLayer

        layers = getattr(cache, "layers", None)
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def _merge(self, c1: Any, a1: Any, c2: Any, a2: Any) -> tuple[Any, Any]:
        """Stack two running groups: left-pad the shorter cache/mask with masked zeros."""
        F = self._torch.nn.functional
        L1, L2 = a1.shape[1], a2.shape[1]
        L = max(L1, L2)
        for l1, l2 in zip(c1.layers, c2.layers):
            l1.keys = self._torch.cat([F.pad(l1.keys, (0, 0, L - L1, 0)), F.pad(l2.keys, (0, 0, L - L2, 0))])
            l1.values = self._torch.cat([F.pad(l1.values, (0, 0, L - L1, 0)),
                                         F.pad(l2.values, (0, 0, L - L2, 0))])
        attn = self._torch.cat([F.pad(a1, (L - L1, 0)), F.pad(a2, (L - L2, 0))])
        return c1, attn

    def _trim_left_padding(self, cache: Any, attn: Any) -> Any:
        """Drop leading cache columns that are padding for every remaining row.

        Only for plain full-attention ``DynamicLayer`` caches (sliding-window and other layer
        types keep their own bookkeeping); positions are explicit, so nothing else moves."""
        from transformers.cache_utils import DynamicLayer

        empty = (attn == 0).all(dim=0)
        if not bool(empty[0]):
            return attn
        n = int(empty.long().cumprod(0).sum())
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return attn
        for layer in layers:
            if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, n:, :]
                layer.values = layer.values[:, :, n:, :]
        self.stats["trimmed_columns"] += n
        return attn[:, n:]

    def describe(self) -> dict:
        bs = self.batch_size or getattr(self, "last_batch_size", None) or "auto"
        return {"backend": "hf", "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "batch_size": bs,
                "batch_size_auto": self.batch_size is None}


# --------------------------------------------------------------------------- front end
class Generator:
    """Generate for many prompts with one loaded model; see the module docstring."""

    def __init__(self, model: Any, adapter: str | os.PathLike | None = None,
                 batch_size: int | None = None, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None, dtype: Any = None,
                 max_adapters: int = 4):
        self.ref: str | None = None
        if isinstance(model, (tuple, list)) and len(model) == 2:
            self.backend: Any = HFBackend(model[0], model[1], None, batch_size, max_adapters)
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
                 progress: Progress | None = None) -> list[str]:
        """One completion per prompt, in input order. Cached prompts are not regenerated."""
        prompts = list(prompts)
        t0 = time.perf_counter()
        out: list[str | None] = [None] * len(prompts)
        ntok = [0] * len(prompts)
        todo = list(range(len(prompts)))
        ident = sd = None
        if self.cache is not None:
            ident, sd = self.identity(), spec_dict(spec)
            hits = self.cache.get_many(ident, sd, prompts)
            for i, h in enumerate(hits):
                if h is not None:
                    out[i], ntok[i] = h["text"], int(h.get("n_tokens", 0))
            todo = [i for i in range(len(prompts)) if out[i] is None]
        n_cached = len(prompts) - len(todo)
        gen_tokens = 0

        def on_batch(local_idx: list[int], res: list[tuple[str, int]]) -> None:
            nonlocal gen_tokens
            rows = []
            for li, (text, n) in zip(local_idx, res):
                gi = todo[li]
                out[gi], ntok[gi] = text, n
                gen_tokens += n
                rows.append((prompts[gi], text, n))
            if self.cache is not None:
                self.cache.put_many(ident, sd, rows)

        if todo:
            wrapped = None
            if progress is not None:
                progress(n_cached, len(prompts))
                wrapped = lambda d, _t: progress(n_cached + d, len(prompts))  # noqa: E731
            self.backend.generate([prompts[i] for i in todo], spec, wrapped, on_batch)
        elif progress is not None:
            progress(len(prompts), len(prompts))
        wall = time.perf_counter() - t0
        self.last = {"n_prompts": len(prompts), "n_cached": n_cached, "generated_tokens": gen_tokens,
                     "wall_s": wall, "tokens_per_s": gen_tokens / wall if wall > 0 and gen_tokens else 0.0,
                     "n_tokens": ntok}
        return [o if o is not None else "" for o in out]


__all__ = ["Generator", "HFBackend", "checkpoint_hash", "checkpoint_kind", "resolve_checkpoint",
           "spec_dict", "truncate_at_stop"]
