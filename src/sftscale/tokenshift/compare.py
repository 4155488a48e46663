"""Teacher-force responses through a base and a finetuned model and compare them token by token.

``compare(finetuned, pairs, base=...)`` takes (prompt ids, response ids) pairs and runs ONE
batched forward pass per model over them (more only when the response logits would exceed
``max_elements`` floats: then one pass per model per chunk). Rows are left-padded; the output
layer sees only the positions that predict a response token (``response_logits``), so no
logits are computed for prompts or padding. Per response token it returns:

- ``base_rank``: 1 + the number of vocabulary entries the base scores strictly higher than the
  token (URIAL's measure: 1 unshifted, 2-3 marginal, beyond shifted);
- ``base_logprob``, ``ft_logprob``: the token's log-probability under each model;
- ``kl``: KL(finetuned || base) over the whole vocabulary at that position, in nats.

For a peft model, ``base=None`` runs the base pass with the adapter disabled
(``disable_adapter()``): the same weights, no second copy. A full finetune needs the base as a
second model (``base=``; a peft model given as the base runs with its adapters disabled).
Log-softmax, ranks and KL are computed in float32 whatever the models' dtype.

Not handled: models on several devices (the inputs go to the first parameter's device),
sequences longer than the model's context (the caller cuts prompts as generation did),
vocabularies that differ between the two models (a ValueError).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

#: the most logits (rows x response positions x vocabulary) one forward pass may produce
MAX_ELEMENTS = 1 << 26


@dataclass
class Shift:
    """One response's per-token comparison (lists of equal length, one entry per token)."""

    base_rank: list[int] = field(default_factory=list)
    base_logprob: list[float] = field(default_factory=list)
    ft_logprob: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)


def base_view(model: Any) -> Any:
    """A context in which a peft model runs as its base (adapter disabled); for any other
    model a ValueError (a full finetune needs its base passed as a model of its own)."""
    if not hasattr(model, "disable_adapter"):
        raise ValueError("the finetuned model has no adapter to disable: pass base= the base model")
    return model.disable_adapter()


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _chunks(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], vocab: int,
            max_elements: int) -> Iterator[list[int]]:
    """Row indices (longest sequences first) in chunks whose response logits stay under
    ``max_elements`` floats (at least one row per chunk)."""
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    chunk: list[int] = []
    n = 0
    for i in order:
        r = len(pairs[i][1])
        if chunk and (n + r) * vocab > max_elements:
            yield chunk
            chunk, n = [], 0
        chunk.append(i)
        n += r
    if chunk:
        yield chunk


def _batch(torch: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
           device: Any) -> tuple[Any, Any, Any, Any, Any]:
    """(input_ids, attention mask, position ids, wanted, targets): row i is
    ``pad*(L-len(prompt+response)) + prompt + response``; ``wanted`` marks the positions that
    predict a response token, ``targets`` those tokens (row by row, in order)."""
    L = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(pairs), L), dtype=torch.long)
    want = torch.zeros((len(pairs), L), dtype=torch.bool)
    for i, (p, r) in enumerate(pairs):
        ids[i, L - len(p) - len(r):] = torch.tensor(list(p) + list(r), dtype=torch.long)
        attn[i, L - len(p) - len(r):] = 1
        want[i, L - len(r) - 1:L - 1] = True
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    targets = torch.tensor([t for _, r in pairs for t in r], dtype=torch.long)
    return ids.to(device), attn.to(device), pos.to(device), want.to(device), targets.to(device)


def response_logits(model: Any, ids: Any, attn: Any, pos: Any, want: Any) -> Any:
    """float32 logits of the ``want`` positions (rows in order), shape (want.sum(), V), from one
    forward pass. The output layer sees only those positions (a pre-hook gathers them), so no
    logits are computed for padding or prompts; a model whose forward does not allow that is
    run whole and indexed afterwards."""
    n = int(want.sum())
    keep = int(want.shape[1] - want.float().argmax(-1).min())  # columns from the first wanted on
    head = model.get_output_embeddings()

    def gather(_module: Any, args: tuple) -> tuple:
        h = args[0]
        return (h[want[:, -h.shape[1]:]][None], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False,
                    logits_to_keep=keep)
        logits = out.logits.reshape(-1, out.logits.shape[-1])
        if logits.shape[0] == n:
            return logits.float()
    except (TypeError, RuntimeError, ValueError):  # no logits_to_keep, or a reshaping head
        pass
    finally:
        handle.remove()
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False)
    return out.logits[want].float()


def compare(finetuned: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
            base: Any = None, pad_id: int = 0, max_elements: int = MAX_ELEMENTS) -> list[Shift]:
    """One ``Shift`` per (prompt ids, response ids) pair, in input order (module docstring).
    An empty response gives an empty ``Shift``; a pair with an empty prompt is a ValueError
    (nothing would predict the first response token)."""
    import torch

    from ..models import attention_backends

    if any(not p for p, _ in pairs):
        raise ValueError("every prompt needs at least one token (encode_prompt gives BOS)")
    out = [Shift() for _ in pairs]
    live = [i for i, (_, r) in enumerate(pairs) if len(r)]
    if not live:
        return out
    device = _device(finetuned)
    vocab = int(finetuned.get_output_embeddings().weight.shape[0])
    with torch.inference_mode(), attention_backends(device):
        for chunk in _chunks([pairs[i] for i in live], vocab, max_elements):
            rows = [live[j] for j in chunk]
            ids, attn, pos, want, tgt = _batch(torch, [pairs[i] for i in rows], pad_id, device)
            ctx = (base_view(finetuned) if base is None else base.disable_adapter()
                   if hasattr(base, "disable_adapter") else contextlib.nullcontext())
            with ctx:
                lb = response_logits(finetuned if base is None else base, ids, attn, pos, want)
            lf = response_logits(finetuned, ids, attn, pos, want)
            if lb.shape != lf.shape:
                raise ValueError(f"the models' vocabularies differ ({lb.shape[-1]} vs {lf.shape[-1]})")
            lpb, lpf = torch.log_softmax(lb, -1), torch.log_softmax(lf, -1)
            rank = ((lb > lb.gather(-1, tgt[:, None])).sum(-1) + 1).tolist()
            blp = lpb.gather(-1, tgt[:, None])[:, 0].tolist()
            flp = lpf.gather(-1, tgt[:, None])[:, 0].tolist()
            kl = (lpf.exp() * (lpf - lpb)).sum(-1).clamp(min=0.0).tolist()
            k = 0
            for i in rows:
                n = len(pairs[i][1])
                out[i] = Shift(rank[k:k + n], blp[k:k + n], flp[k:k + n], kl[k:k + n])
                k += n
    return out


def bands(ranks: Sequence[int]) -> dict[str, float]:
    """Shares of unshifted (rank 1), marginal (2-3) and shifted (> 3) tokens."""
    n = len(ranks) or 1
    return {"unshifted": sum(r == 1 for r in ranks) / n,
            "marginal": sum(2 <= r <= 3 for r in ranks) / n,
            "shifted": sum(r > 3 for r in ranks) / n}


__all__ = ["MAX_ELEMENTS", "Shift", "bands", "base_view", "compare", "response_logits"]
