"""The transformers backend: one loaded base, swappable adapters, a hand-written decode loop.

Per ``generate`` call: prompts are tokenised one by one with ``models.encode_prompt`` (the
tokenizer adds its special tokens, e.g. BOS, unless the prompt already starts with the BOS
text: the same rule as lm-evaluation-harness and as training), sorted by length (longest
first), left-padded, prefilled, then decoded one token at a time with a ``DynamicCache``.

The decode loop is a ``_RunningBatch``: ``admit`` prefills a group of queued prompts and
merges it into the running batch (caches left-padded with masked zeros), ``step`` decodes
one token for every row, and a row that emits EOS, hits a stop string or reaches
``max_new_tokens`` is retired: DROPPED from the batch (``Cache.batch_select_indices``), so
finished rows cost nothing, and leading cache columns that became padding for every remaining
row are cut. Continuous batching: when a quarter of the batch is free, the next queued prompts
are admitted, so the batch stays full until the queue is empty. Position ids follow the
attention mask (as ``model.generate`` does), so padding does not move positions: greedy
output is the same for every batch size in fp32 on CPU (tests/test_generate.py checks 1 vs
32). In bf16 on GPU, padding and batch composition change reduction order, and an argmax
that is a near-tie can flip; compare across batch sizes only in fp32. Sampling
(``temperature > 0``): each row has its own ``torch.Generator`` seeded with the row's seed
(``backend.row_seed``: seed, prompt, sample index) and draws one token per step from
softmax(logits / temperature) cut to the ``top_p`` nucleus, so a row's draws do not depend
on its batch neighbours (same fp32 caveat: its logits must be the same).

Why not ``model.generate``: it keeps finished rows in the batch until the longest row ends,
cannot refill a batch, and decodes every row's tail at every step for stop strings; the loop
here is ~200 lines; measurements in docs/notes/generate.md
(benchmarks/bench_generate_vs_lmeval.py).

Shared prefix (k-shot contexts): when every prompt of a ``generate`` call starts with the same
``MIN_PREFIX`` or more token ids (one draw of k examples shared by all items), that prefix is
prefilled ONCE (batch of one) and each group's cache starts from a copy of its keys and values;
only the suffixes are prefilled, left-padded after the prefix (padding in the middle is masked,
and positions follow the mask, so every row sees the same positions as when recomputed). Greedy
output equals recomputing in fp32 on CPU (tests/test_fewshot.py;
benchmarks/bench_kshot_cache.py measures the saving). ``share_prefix = False`` turns it off.
Not for caches other than plain ``DynamicLayer`` ones (then the prefix is recomputed).

Adapters: ``set_adapter(dir)`` on a peft adapter directory (``adapter_config.json``) loads
it once into the SAME base object (peft ``PeftModel.from_pretrained`` the first time,
``load_adapter`` after) and switches with ``set_adapter``; ``set_adapter(None)`` runs the
base with adapters disabled. At most ``max_adapters`` stay loaded (oldest deleted). A
directory with full weights (``config.json`` + safetensors) replaces the model instead.

Not handled: merging into caches other than plain ``DynamicLayer`` ones (sliding-window
models fall back to static batches that only shrink), prompt caching across calls, beam
search, prefixes shared by only some of the prompts, models whose caches cannot select
batch rows (linear-attention hybrids), multi-GPU
(use the vLLM or server backends), token-level stop sequences other than EOS ids.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..events import ProgressFn
from ..io import InputError
from ..models import attention_backends, encode_prompt
from ..tasks.base import GenSpec
from .backend import OnBatch, report, truncate_at_stop
from .checkpoint import checkpoint_hash, checkpoint_kind, resolve_checkpoint, state_hash, tokenizer_hash

#: shortest common prefix (tokens) whose KV cache is computed once per call and reused
MIN_PREFIX = 16


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
                      "merged_groups": 0, "prefix_tokens_reused": 0}
        self.share_prefix = True  # reuse the KV cache of a prefix common to all prompts of a call
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
                                    and not Path(self.ref).exists() else state_hash(self.model))
        if self._tok_hash is None:
            self._tok_hash = tokenizer_hash(self.tok)
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

    def _context(self) -> Any:
        if self.adapter is None and self._adapters:  # adapters we attached: run the bare base
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    # ---- batching
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids by the one BOS rule (``models.encode_prompt``)."""
        return encode_prompt(self.tok, prompt)

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

    def generate(self, prompts: list[str], spec: GenSpec, progress: ProgressFn | None,
                 on_batch: OnBatch, seeds: list[int] | None = None) -> None:
        """Continuous batching: rows leave when done; queued prompts (longest first) are
        prefilled and merged into the running batch when a quarter of it is free."""
        if spec.sampling and seeds is None:
            seeds = [spec.seed] * len(prompts)
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
        batch = _RunningBatch(self, spec, bs)
        sent = 0
        p = len(os.path.commonprefix(enc)) if len(enc) > 1 and self.share_prefix else 0
        p = min(p, min(len(e) for e in enc) - 1)  # every row keeps a token to prefill

        def flush(force: bool) -> None:
            nonlocal sent
            done = batch.finished
            if done and (force or len(done) >= bs):
                res = [(truncate_at_stop(self.tok.decode(r.out, skip_special_tokens=True),
                                         batch.stops), len(r.out)) for r in done]
                on_batch([r.idx for r in done], res)
                sent += len(done)
                batch.finished = []
                report(progress, sent, len(enc))

        with self._context(), self._torch.inference_mode(), attention_backends(self.device):
            if p >= MIN_PREFIX:
                batch.prefix = self.prefix_cache(enc[0][:p])
            while queue or batch.rows:
                if queue and batch.has_room():
                    n = bs - len(batch.rows)
                    group, queue = queue[:n], queue[n:]
                    batch.admit([_Row(i, enc[i], gen=self._row_generator(seeds, i))
                                 for i in group])
                    flush(False)
                    if not batch.rows:
                        continue
                batch.step()
                flush(False)
        flush(True)

    def _row_generator(self, seeds: list[int] | None, i: int) -> Any:
        """Row i's own random generator (None when decoding greedily)."""
        if seeds is None:
            return None
        return self._torch.Generator(device=self.device).manual_seed(int(seeds[i]))

    _kw: dict = {"logits_to_keep": 1}

    def forward(self, input_ids: Any, attn: Any, pos: Any, cache: Any) -> Any:
        """Last-position logits of one forward pass that extends ``cache``."""
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                         use_cache=True, **{_cache_kwarg(self.model): cache}, **self._kw)
        return out.logits[:, -1, :]

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:
            return DynamicCache()

    def prefix_cache(self, ids: list[int]) -> tuple[int, list[tuple[Any, Any]]] | None:
        """(length, per-layer keys and values) of ``ids`` prefilled alone; None when the cache
        has layers other than plain ``DynamicLayer`` ones (the prefix is then recomputed)."""
        torch, cache = self._torch, self._new_cache()
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        attn = torch.ones_like(x)
        try:
            self.forward(x, attn, torch.arange(len(ids), device=self.device)[None], cache)
        except TypeError:  # a model without logits_to_keep
            self._kw = {}
            self.forward(x, attn, torch.arange(len(ids), device=self.device)[None], cache)
        if not _mergeable(cache):
            return None
        return len(ids), [(layer.keys, layer.values) for layer in cache.layers]

    def prefill(self, ids_list: list[list[int]], prefix: tuple[int, list] | None = None
                ) -> tuple[Any, Any, Any, Any]:
        """Left-padded prefill of a group: (cache, attention mask, last positions, logits).
        With ``prefix`` (``prefix_cache``: the first ``p`` ids of every row), the cache starts
        from the prefix's keys and values and only the rest of each row is computed."""
        torch = self._torch
        p = prefix[0] if prefix is not None else 0
        dev, B = self.device, len(ids_list)
        ids_list = [x[p:] for x in ids_list]
        L = max(len(x) for x in ids_list)
        input_ids = torch.full((B, L), self.tok.pad_token_id, dtype=torch.long)
        attn = torch.zeros((B, p + L), dtype=torch.long)
        attn[:, :p] = 1
        for r, x in enumerate(ids_list):
            input_ids[r, L - len(x):] = torch.tensor(x, dtype=torch.long)
            attn[r, p + L - len(x):] = 1
        input_ids, attn = input_ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)[:, p:]
        cache = self._new_cache()
        if prefix is not None:
            for li, (k, v) in enumerate(prefix[1]):
                cache.update(k.expand(B, -1, -1, -1).contiguous(),
                             v.expand(B, -1, -1, -1).contiguous(), li)
            self.stats["prefix_tokens_reused"] += p * B
        try:
            logits = self.forward(input_ids, attn, pos, cache)
        except TypeError:  # a model without logits_to_keep
            self._kw = {}
            logits = self.forward(input_ids, attn, pos, cache)
        if cache.get_seq_length() == 0:  # our bug, not the user's: see _cache_kwarg
            raise RuntimeError(f"{type(self.model).__name__} did not fill the KV cache it was "
                               f"passed as {_cache_kwarg(self.model)!r}")
        return cache, attn, pos[:, -1], logits

    def describe(self) -> dict:
        bs = self.batch_size or getattr(self, "last_batch_size", None) or "auto"
        return {"backend": "hf", "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "batch_size": bs,
                "batch_size_auto": self.batch_size is None}


# --------------------------------------------------------------------------- the decode loop
@dataclass
class _Row:
    """One prompt in flight: its index in the call's prompts, its ids, its new tokens."""

    idx: int
    ids: list[int]
    out: list[int] = field(default_factory=list)
    gen: Any = None  # the row's torch.Generator when sampling


class _RunningBatch:
    """The rows decoding together, with one row of KV cache, attention mask, last position
    and next token each. ``admit`` prefills a group and merges it in, ``step`` decodes one
    token for every row, ``retire`` drops finished rows; finished rows wait in ``finished``
    until the backend reports them."""

    def __init__(self, backend: HFBackend, spec: GenSpec, size: int):
        self.b, self.size, self.max_new = backend, size, spec.max_new_tokens
        self.stops = [s for s in spec.stop if s]
        self.window = 2 * max((len(s) for s in self.stops), default=0) + 4
        self.sampling, self.temperature, self.top_p = spec.sampling, spec.temperature, spec.top_p
        self.rows: list[_Row] = []
        self.finished: list[_Row] = []
        self.cache: Any = None
        self.attn: Any = None
        self.last: Any = None
        self.nxt: Any = None
        self.prefix: tuple[int, list] | None = None  # HFBackend.prefix_cache of the call, if any

    def has_room(self) -> bool:
        """Empty, or a quarter free and every cache layer can take new rows."""
        free = self.size - len(self.rows)
        return not self.rows or (free >= max(1, self.size // 4) and _mergeable(self.cache))

    def admit(self, group: list[_Row]) -> None:
        """Prefill ``group``, pick its first tokens, and merge its unfinished rows in."""
        torch = self.b._torch
        cache, attn, last, logits = self.b.prefill([r.ids for r in group], self.prefix)
        nxt = self._pick(logits, group)
        keep = self._extend(group, nxt)
        if not keep:
            return
        if len(keep) < len(group):
            sel = torch.tensor(keep, device=self.b.device)
            cache.batch_select_indices(sel)
            attn, last, nxt = attn[sel], last[sel], nxt[sel]
        group = [group[j] for j in keep]
        if self.rows:
            self.cache, self.attn = _merge(torch, self.cache, self.attn, cache, attn)
            self.b.stats["merged_groups"] += 1
            self.last, self.nxt = torch.cat([self.last, last]), torch.cat([self.nxt, nxt])
            self.rows = self.rows + group
        else:
            self.cache, self.attn, self.last, self.nxt, self.rows = cache, attn, last, nxt, group

    def step(self) -> None:
        """Decode one token for every running row, then retire the rows that finished."""
        self.attn = self.b._torch.cat([self.attn, self.attn.new_ones((len(self.rows), 1))], dim=1)
        self.last = self.last + 1
        logits = self.b.forward(self.nxt[:, None], self.attn, self.last[:, None], self.cache)
        self.nxt = self._pick(logits, self.rows)
        self.retire(self._extend(self.rows, self.nxt))

    def retire(self, keep: list[int]) -> None:
        """Keep only the rows at positions ``keep``; cut padding columns no row needs."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache = [], None
            return
        sel = self.b._torch.tensor(keep, device=self.b.device)
        self.cache.batch_select_indices(sel)
        self.attn, self.last, self.nxt = self.attn[sel], self.last[sel], self.nxt[sel]
        self.rows = [self.rows[j] for j in keep]
        self.attn = _trim_left_padding(self.cache, self.attn, self.b.stats)

    def _pick(self, logits: Any, rows: list[_Row]) -> Any:
        """Argmax, or one draw per row with the row's own generator (module doc)."""
        if not self.sampling:
            return logits.argmax(-1)
        probs = nucleus_probs(self.b._torch, logits, self.temperature, self.top_p)
        return self.b._torch.cat([self.b._torch.multinomial(probs[j], 1, generator=r.gen)
                                  for j, r in enumerate(rows)])

    def _extend(self, rows: list[_Row], nxt: Any) -> list[int]:
        """Append each row's chosen token; rows that hit EOS, ``max_new_tokens`` or a stop
        string go to ``finished``. Returns the positions (in ``rows``) still running."""
        keep: list[int] = []
        for j, t in enumerate(nxt.tolist()):
            if t in self.b.eos_ids:
                self.finished.append(rows[j])
                continue
            rows[j].out.append(t)
            if len(rows[j].out) < self.max_new:
                keep.append(j)
            else:
                self.finished.append(rows[j])
        if self.stops and keep:  # one batched decode of each row's tail
            tails = self.b.tok.batch_decode([rows[j].out[-self.window:] for j in keep],
                                            skip_special_tokens=True)
            still = []
            for j, tail in zip(keep, tails):
                if any(s in tail for s in self.stops):
                    self.finished.append(rows[j])
                else:
                    still.append(j)
            keep = still
        return keep


def nucleus_probs(torch: Any, logits: Any, temperature: float, top_p: float) -> Any:
    """softmax(logits / temperature) with the tokens outside the ``top_p`` nucleus zeroed
    (transformers' ``TopPLogitsWarper`` rule: drop the least likely tokens whose cumulative
    probability stays <= 1 - top_p; the most likely token always stays)."""
    scores = logits.float() / temperature
    if top_p < 1.0:
        srt, order = torch.sort(scores, dim=-1, descending=False)
        cum = srt.softmax(-1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[..., -1] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.softmax(scores, -1)


# --------------------------------------------------------------------------- cache surgery
_CACHE_KW: dict[type, str] = {}


def _cache_kwarg(model: Any) -> str:
    """The keyword under which ``model.forward`` takes a KV cache.

    transformers renamed ``past_key_values`` to ``cache`` between 5.17 and 5.24 (the old name
    still works there, with a warning). On 5.17 an unknown ``cache=`` is swallowed by
    ``**kwargs``: the model builds its own cache and ours stays empty, so decoding silently
    loses its history (found on the GPU machine's 5.17; ``prefill`` now checks)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cls = type(base)
    if cls not in _CACHE_KW:
        import inspect

        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(cls.forward).parameters
        except (TypeError, ValueError):
            params = {}
        _CACHE_KW[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KW[cls]


def _mergeable(cache: Any) -> bool:
    """Rows can join a running batch only when every cache layer is a plain DynamicLayer."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


def _merge(torch: Any, c1: Any, a1: Any, c2: Any, a2: Any) -> tuple[Any, Any]:
    """Stack two running groups: left-pad the shorter cache/mask with masked zeros."""
    F = torch.nn.functional
    L1, L2 = a1.shape[1], a2.shape[1]
    L = max(L1, L2)
    for l1, l2 in zip(c1.layers, c2.layers):
        l1.keys = torch.cat([F.pad(l1.keys, (0, 0, L - L1, 0)), F.pad(l2.keys, (0, 0, L - L2, 0))])
        l1.values = torch.cat([F.pad(l1.values, (0, 0, L - L1, 0)),
                               F.pad(l2.values, (0, 0, L - L2, 0))])
    attn = torch.cat([F.pad(a1, (L - L1, 0)), F.pad(a2, (L - L2, 0))])
    return c1, attn


def _trim_left_padding(cache: Any, attn: Any, stats: dict) -> Any:
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
    stats["trimmed_columns"] += n
    return attn[:, n:]


__all__ = ["HFBackend"]
