"""Checkpoint identity: what a checkpoint directory holds and the content hashes that name it.

- ``checkpoint_kind(dir)``: ``lora`` (peft adapter, ``adapter_config.json``), ``full``
  (``config.json`` + weights), or an ``InputError``; a cell dir stands for its ``ckpt/``;
- ``resolve_checkpoint(dir)``: the directory that holds the weights (a cell dir -> ``ckpt/``);
- ``checkpoint_hash(dir)``: weight files plus adapter config, so a checkpoint rewritten in
  place gets a new hash;
- ``tokenizer_hash(tok)`` and ``state_hash(model)``: the tokenizer and an in-memory model
  (one not loaded from a path) as part of the generation cache key.

Not handled: checkpoints outside the two layouts above (e.g. a bare ``.safetensors`` file),
hashing remote hub models (the caller falls back to ``ref:<hub id>``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import InputError, sha256_json, sha256_text


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


def tokenizer_hash(tok: Any) -> str:
    """Hash of a tokenizer's full definition plus its BOS/EOS/pad tokens."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = json.dumps(sorted(tok.get_vocab().items()))
    extra = {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token}
    return sha256_text(body + json.dumps(extra, sort_keys=True))


def state_hash(model: Any) -> str:
    """Hash of an in-memory model's tensors (used only for models not loaded from a path)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


__all__ = ["checkpoint_hash", "checkpoint_kind", "resolve_checkpoint", "state_hash",
           "tokenizer_hash"]
