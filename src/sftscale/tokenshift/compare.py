"""Teacher-force responses through a base and a finetuned model and compare them token by token.

``compare(finetuned, pairs, base=...)`` takes (prompt ids, response ids) pairs and runs ONE
batched forward pass per model over them (more only when the logits would exceed
``max_elements`` floats: then one pass per model per chunk). Rows are laid out with every
prompt ending in the same column (prompts left-padded, responses right-padded), so the
response positions are one block of columns and only their logits are computed
(``logits_to_keep``). Per response token it returns:

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
    """Row indices in chunks whose logits stay under ``max_elements`` (at least one row)."""
    order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][1]))
    chunk: list[int] = []
    for i in order:
        r = max([len(pairs[j][1]) for j in chunk] + [len(pairs[i][1])])
        if chunk and (len(chunk) + 1) * r * vocab > max_elements:
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


def _batch(torch: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
           device: Any) -> tuple[Any, Any, Any, int]:
    """(input_ids, attention mask, position ids, prompt width P): row i is
    ``pad*(P-len(prompt)) + prompt + response + pad*(R-len(response))``."""
    P = max(len(p) for p, _ in pairs)
    R = max(len(r) for _, r in pairs)
    ids = torch.full((len(pairs), P + R), pad_id, dtype=torch.long)
    attn = torch.zeros((len(pairs), P + R), dtype=torch.long)
    for i, (p, r) in enumerate(pairs):
        ids[i, P - len(p):P + len(r)] = torch.tensor(list(p) + list(r), dtype=torch.long)
        attn[i, P - len(p):P + len(r)] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), attn.to(device), pos.to(device), P


def response_logits(model: Any, ids: Any, attn: Any, pos: Any, P: int) -> Any:
    """float32 logits predicting columns P..end (shape B x R x V) of one forward pass."""
    R = ids.shape[1] - P
    try:
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False,
                    logits_to_keep=R + 1)
        logits = out.logits[:, -(R + 1):-1, :]
    except TypeError:  # a model without logits_to_keep
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False)
        logits = out.logits[:, P - 1:-1, :]
    return logits.float()


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
            ids, attn, pos, P = _batch(torch, [pairs[i] for i in rows], pad_id, device)
            ctx = (base_view(finetuned) if base is None else base.disable_adapter()
                   if hasattr(base, "disable_adapter") else contextlib.nullcontext())
            with ctx:
                lb = response_logits(finetuned if base is None else base, ids, attn, pos, P)
            lf = response_logits(finetuned, ids, attn, pos, P)
            if lb.shape != lf.shape:
                raise ValueError(f"the models' vocabularies differ ({lb.shape[-1]} vs {lf.shape[-1]})")
            tgt = ids[:, P:]
            lpb, lpf = torch.log_softmax(lb, -1), torch.log_softmax(lf, -1)
            tok_b = lb.gather(-1, tgt[..., None])
            rank = (lb > tok_b).sum(-1) + 1
            blp = lpb.gather(-1, tgt[..., None])[..., 0]
            flp = lpf.gather(-1, tgt[..., None])[..., 0]
            kl = (lpf.exp() * (lpf - lpb)).sum(-1).clamp(min=0.0)
            for k, i in enumerate(rows):
                n = len(pairs[i][1])
                out[i] = Shift(rank[k, :n].tolist(), blp[k, :n].tolist(), flp[k, :n].tolist(),
                               kl[k, :n].tolist())
    return out


def bands(ranks: Sequence[int]) -> dict[str, float]:
    """Shares of unshifted (rank 1), marginal (2-3) and shifted (> 3) tokens."""
    n = len(ranks) or 1
    return {"unshifted": sum(r == 1 for r in ranks) / n,
            "marginal": sum(2 <= r <= 3 for r in ranks) / n,
            "shifted": sum(r > 3 for r in ranks) / n}


__all__ = ["MAX_ELEMENTS", "Shift", "bands", "base_view", "compare", "response_logits"]
