"""Checks of what ``evaluate`` is asked to load, made before anything is loaded.

- ``find_train_meta(path)``: a checkpoint's ``train_meta.json`` (in the dir itself, the cell
  dir above ``ckpt/``, or ``ckpt/`` below it);
- ``locate_adapter(path)``: what ``--adapter`` may name: a checkpoint dir (``ckpt/``), a
  ``train_cell`` output (the dir holding ``ckpt/`` and ``train_meta.json``) or a study cell
  (the dir holding ``train/``); returns the ``train_cell`` output (or the checkpoint dir) and
  refuses an N = 0 cell, which has no checkpoint;
- ``checkpoint_base(path)``: the base a checkpoint was trained from and the file that says
  so: ``train_meta.json``'s ``model``, else a LoRA adapter's ``base_model_name_or_path``;
- ``check_base(model, adapter)``: an InputError naming ``--adapter`` and both models when the
  checkpoint's base is not ``model``. Two references are the same model when they are equal,
  resolve to the same directory or hub id, or to directories with the same weights; a full
  checkpoint without a recorded base is compared by its architecture (``config.json``);
- ``check_weights(dir)``: every ``*.safetensors`` file of a local model or checkpoint opens
  (header complete, file as long as the header says): else "damaged checkpoint weights".

Not handled: telling apart two models of the same architecture when nothing records the
base (a bare full checkpoint), hub models not in the local cache (not compared: the
reference strings then decide only when both are hub ids), ``.bin`` weights (not opened).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import InputError

#: config.json keys that must agree between a full checkpoint and its base
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "intermediate_size", "vocab_size")


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg})", line=e.lineno) from None
    return obj if isinstance(obj, dict) else {}


def find_train_meta(adapter: str | os.PathLike) -> Path | None:
    """``train_meta.json`` of a checkpoint: in the dir itself or the cell dir above it."""
    p = Path(adapter)
    for cand in (p / "train_meta.json", p.parent / "train_meta.json",
                 p / "ckpt" / "train_meta.json"):
        if cand.is_file():
            return cand
    return None


def locate_adapter(path: str | os.PathLike) -> Path:
    """The ``train_cell`` output (or checkpoint dir) that ``path`` stands for; see above."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such checkpoint directory", field="adapter")
    if not p.is_dir():
        raise InputError(p, "not a directory: give a checkpoint or cell directory", field="adapter")
    own = any((p / x).exists() for x in ("adapter_config.json", "config.json", "ckpt"))
    if not own and (p / "train").is_dir():
        p = p / "train"  # a study cell: cells/<key>/train holds ckpt/ and train_meta.json
    meta = p / "train_meta.json"
    if meta.is_file() and not (p / "ckpt").exists() and not (p / "config.json").exists() \
            and _read_json(meta).get("trained") is False:
        raise InputError(meta, "this cell was not trained (N = 0): its model is the base "
                         "model itself; evaluate it without --adapter", field="adapter")
    return p


def checkpoint_base(path: str | os.PathLike) -> tuple[str | None, Path | None]:
    """(base model reference, the file recording it), or (None, None) when nothing does."""
    meta = find_train_meta(path)
    if meta is not None:
        m = _read_json(meta).get("model")
        if isinstance(m, str) and m:
            return m, meta
    from ..generation import resolve_checkpoint

    cfg = resolve_checkpoint(path) / "adapter_config.json"
    if cfg.is_file():
        m = _read_json(cfg).get("base_model_name_or_path")
        if isinstance(m, str) and m:
            return m, cfg
    return None, None


def check_base(model: Any, adapter: str | os.PathLike) -> None:
    """Refuse a checkpoint whose base is not ``model`` (see the module docstring)."""
    if not isinstance(model, (str, os.PathLike)):
        return  # an in-memory model: nothing to compare with
    base, src = checkpoint_base(adapter)
    if base is not None:
        if same_model(base, str(model)) is False:
            raise InputError(src, f"the checkpoint given as --adapter ({adapter}) was trained "
                             f"from {base!r}, but --model is {str(model)!r}: evaluate it with "
                             f"--model {base} (or pass --base-from-checkpoint)", field="model")
        return
    from ..generation import checkpoint_kind, resolve_checkpoint

    ckpt = resolve_checkpoint(adapter)
    if checkpoint_kind(ckpt) != "full":
        return
    mine, theirs = _arch(ckpt), _arch_of_ref(str(model))
    if mine and theirs and mine != theirs:
        diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
        raise InputError(ckpt / "config.json", f"the full checkpoint given as --adapter "
                         f"({adapter}) is not a finetune of --model {str(model)!r} (different "
                         f"{', '.join(diff)}); pass the model it was trained from as --model",
                         field="model")


def same_model(a: str, b: str) -> bool | None:
    """True / False when two references are / are not the same model; None: cannot tell."""
    if a == b:
        return True
    from ..models import local_dir, model_weights_hash, resolve_model

    try:
        sa, sb = resolve_model(a), resolve_model(b)
    except InputError:
        return None  # e.g. a recorded path that no longer exists
    if sa.kind == "hub" and sb.kind == "hub":
        return sa.hub_id == sb.hub_id
    if "gguf" in (sa.kind, sb.kind):  # not converted just to compare
        if sa.kind != sb.kind or sa.path is None or sb.path is None:
            return None
        return sa.path.resolve() == sb.path.resolve()
    da, db = local_dir(sa), local_dir(sb)
    if da is None or db is None:
        return None
    if Path(da).resolve() == Path(db).resolve():
        return True
    if _arch(Path(da)) != _arch(Path(db)):
        return False
    return model_weights_hash(sa) == model_weights_hash(sb)


def _arch(d: Path) -> dict:
    cfg = d / "config.json"
    if not cfg.is_file():
        return {}
    c = _read_json(cfg)
    return {k: c.get(k) for k in ARCH_KEYS}


def _arch_of_ref(ref: str) -> dict:
    from ..models import local_dir, resolve_model

    try:
        spec = resolve_model(ref)
        d = local_dir(spec) if spec.kind != "gguf" else None
    except InputError:
        return {}
    return _arch(Path(d)) if d is not None else {}


def check_weights(path: str | os.PathLike, field: str = "adapter") -> None:
    """InputError for the first ``*.safetensors`` file under ``path`` that does not open."""
    from safetensors import SafetensorError, safe_open

    d = Path(path)
    if not d.is_dir():
        return
    for f in sorted(d.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as h:  # reads and checks the header only
                h.keys()
        except (SafetensorError, OSError) as e:
            raise InputError(f, f"damaged checkpoint weights: {f.name} ({e}); retrain the cell "
                             "or restore the file", field=field) from None


__all__ = ["check_base", "check_weights", "checkpoint_base", "find_train_meta", "locate_adapter",
           "same_model"]
