"""Generator: batching invariance, stop strings, adapters on one base, the content cache,
and the OpenAI-compatible client against a loopback server.

The model is a tiny randomly initialised Llama with a character-level tokenizer (the
``tiny_model("chars")`` fixture of conftest.py), so nothing is downloaded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sftscale.generation import Generator, checkpoint_hash, truncate_at_stop
from sftscale.generation.remote import parse_openai_ref
from sftscale.io import InputError
from sftscale.tasks.base import GenSpec
from sftscale.testing import make_lora

PROMPTS = [f"Q{i}: add {i} and {3 * i}?" * (1 + i % 3) for i in range(20)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model) -> Path:
    return tiny_model("chars")


@pytest.fixture(scope="module")
def loaded(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny).eval(), AutoTokenizer.from_pretrained(tiny)


def test_truncate_at_stop_cuts_at_earliest():
    assert truncate_at_stop("ab\nQuestion: c", ["Question:", "\n"]) == "ab"
    assert truncate_at_stop("abc", ["x", ""]) == "abc"
    assert truncate_at_stop("xQuestion:\n", ["\n", "Question:"]) == "x"


def test_batch_size_1_equals_32_and_model_generate(loaded):
    model, tok = loaded
    spec = GenSpec(max_new_tokens=20, stop=("\n", "?!"))
    a = Generator((model, tok), batch_size=32).generate(PROMPTS, spec)
    b = Generator((model, tok), batch_size=1).generate(PROMPTS, spec)
    g7 = Generator((model, tok), batch_size=7)
    c = g7.generate(PROMPTS, spec)
    assert a == b == c
    assert g7.stats["merged_groups"] > 0  # queued prompts joined a running batch
    assert len(set(a)) > 3  # the toy model does not emit one constant string
    # reference: transformers' own generate, one prompt at a time, then the same stop rule
    import torch

    for p, got in list(zip(PROMPTS, a))[:4]:
        ids = tok(p, return_tensors="pt")
        with torch.no_grad():
            o = model.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=0)
        ref = tok.decode(o[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert got == truncate_at_stop(ref, spec.stop)


def test_dropping_finished_rows_and_trimming_padding_keep_outputs(loaded):
    """The longest prompt stops at once: its row is dropped and the left padding it forced on
    the other rows is cut from the cache; every output must equal its batch-of-one output."""
    model, tok = loaded
    prompts = ["short?", "a bit longer prompt", "Q: " + "much longer prompt " * 4, "mid size one"]
    free = Generator((model, tok), batch_size=1).generate(prompts, GenSpec(max_new_tokens=10))
    spec = GenSpec(max_new_tokens=10, stop=(free[2][0],))
    g = Generator((model, tok), batch_size=4)
    batched = g.generate(prompts, spec)
    single = Generator((model, tok), batch_size=1).generate(prompts, spec)
    assert batched == single
    assert g.last["n_tokens"][2] == 1 and max(g.last["n_tokens"]) > 1
    assert g.stats["trimmed_columns"] > 0


def test_stop_and_max_tokens_and_order(loaded):
    model, tok = loaded
    g = Generator((model, tok), batch_size=4)
    free = g.generate(PROMPTS[:6], GenSpec(max_new_tokens=12))
    assert all(n <= 12 for n in g.last["n_tokens"])
    assert any(n == 12 for n in g.last["n_tokens"])
    # a stop string taken from each free output cuts the text right before it
    ch = next(c for t in free for c in t[3:8] if c.strip())
    cut = g.generate(PROMPTS[:6], GenSpec(max_new_tokens=12, stop=(ch,)))
    for f, c in zip(free, cut):
        assert ch not in c
        assert c == f.split(ch)[0] if ch in f else c == f
    # input order kept though batches are length-sorted
    single = [g.generate([p], GenSpec(max_new_tokens=12))[0] for p in PROMPTS[:6]]
    assert single == free


def test_adapters_swap_on_one_base_equals_fresh_load(tiny, tmp_path):
    a1 = make_lora(tiny, tmp_path / "a1", seed=1)
    a2 = make_lora(tiny, tmp_path / "a2", seed=2)
    spec = GenSpec(max_new_tokens=10)
    g = Generator(str(tiny))
    base_obj = g.model
    base_out = g.generate(PROMPTS[:8], spec)
    g.set_adapter(a1)
    out1 = g.generate(PROMPTS[:8], spec)
    g.set_adapter(a2)
    out2 = g.generate(PROMPTS[:8], spec)
    g.set_adapter(a1)
    out1b = g.generate(PROMPTS[:8], spec)
    g.set_adapter(None)
    base_again = g.generate(PROMPTS[:8], spec)
    assert g.stats["base_loads"] == 1
    assert g.stats["adapter_loads"] == 2  # a1 was not loaded twice
    assert g.model.get_base_model() is base_obj  # peft wrapped the same object
    assert out1 != base_out and out2 != out1  # the adapters really change generations
    assert out1b == out1 and base_again == base_out
    fresh1 = Generator(str(tiny), adapter=a1).generate(PROMPTS[:8], spec)
    fresh2 = Generator(str(tiny), adapter=a2).generate(PROMPTS[:8], spec)
    assert fresh1 == out1 and fresh2 == out2


def test_cache_skips_done_prompts_and_never_serves_stale(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    ad = make_lora(tiny, tmp_path / "ad", seed=3)
    cache = tmp_path / "cache"
    spec = GenSpec(max_new_tokens=8)
    g = Generator(str(tiny), adapter=ad, cache_dir=cache)
    first = g.generate(PROMPTS[:5], spec)
    assert g.last["n_cached"] == 0 and g.last["generated_tokens"] > 0
    more = g.generate(PROMPTS[:8], spec)  # 5 cached, 3 new
    assert more[:5] == first and g.last["n_cached"] == 5
    g2 = Generator(str(tiny), adapter=ad, cache_dir=cache)  # a rerun in a new process
    again = g2.generate(PROMPTS[:8], spec)
    assert again == more and g2.last["n_cached"] == 8 and g2.last["generated_tokens"] == 0
    # another GenSpec is another key
    g2.generate(PROMPTS[:2], GenSpec(max_new_tokens=3))
    assert g2.last["n_cached"] == 0
    # rewrite the adapter IN PLACE with other weights: same path, new content
    h_old = checkpoint_hash(ad)
    f = ad / "adapter_model.safetensors"
    w = load_file(f)
    torch.manual_seed(9)
    save_file({k: torch.randn_like(v) * 0.5 for k, v in w.items()}, f)
    assert checkpoint_hash(ad) != h_old
    g3 = Generator(str(tiny), adapter=ad, cache_dir=cache)
    new = g3.generate(PROMPTS[:8], spec)
    assert g3.last["n_cached"] == 0
    fresh = Generator(str(tiny), adapter=ad).generate(PROMPTS[:8], spec)
    assert new == fresh and new != more


def test_cache_survives_a_torn_line(loaded, tmp_path):
    model, tok = loaded
    g = Generator((model, tok), cache_dir=tmp_path)
    spec = GenSpec(max_new_tokens=5)
    out = g.generate(PROMPTS[:3], spec)
    (shard,) = list(tmp_path.rglob("*.jsonl"))
    with open(shard, "a") as f:
        f.write('{"k": "trunc')  # a crash mid-append
    g2 = Generator((model, tok), cache_dir=tmp_path)
    assert g2.generate(PROMPTS[:4], spec)[:3] == out and g2.last["n_cached"] == 3
    g3 = Generator((model, tok), cache_dir=tmp_path)
    g3.generate(PROMPTS[:4], spec)
    assert g3.last["n_cached"] == 4  # the line appended after the torn one is readable
    for line in shard.read_text().splitlines()[-1:]:
        assert json.loads(line)["text"] is not None


def test_bad_adapter_dir_is_input_error(loaded, tmp_path):
    g = Generator(loaded)
    with pytest.raises(InputError, match="not a checkpoint"):
        g.set_adapter(tmp_path)


# --------------------------------------------------------------------------- OpenAI client
class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *a):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body))
        if self.path.endswith("/load_lora_adapter"):
            out = {}
        else:
            # the server applies stop strings itself (as vLLM does): we keep text before them
            choices = [{"index": i, "text": f" <{p[-4:]}|{body['model']}>\nnext line"}
                       for i, p in enumerate(body["prompt"])]
            choices.reverse()  # order must come from "index"
            out = {"choices": choices, "usage": {"completion_tokens": 5 * len(choices)}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_openai_backend_batches_orders_and_stops(server, tiny, tmp_path):
    assert parse_openai_ref("openai:http://h:1/v1/org/name") == ("http://h:1/v1", "org/name")
    with pytest.raises(InputError):
        parse_openai_ref("openai:h:1/name")
    g = Generator(f"openai:{server}/v1/tiny-model", batch_size=3, cache_dir=tmp_path / "c")
    prompts = [f"prompt number {i:02d}" for i in range(7)]
    out = g.generate(prompts, GenSpec(max_new_tokens=9, stop=("\n",)))
    assert out == [f" <{p[-4:]}|tiny-model>" for p in prompts]
    calls = [b for path, b in _Handler.seen if path.endswith("/completions")]
    assert sorted(len(b["prompt"]) for b in calls) == [1, 3, 3]  # requests run concurrently
    assert all(b["max_tokens"] == 9 and b["stop"] == ["\n"] and b["temperature"] == 0.0 for b in calls)
    # cached on rerun: no new requests
    n = len(_Handler.seen)
    assert g.generate(prompts, GenSpec(max_new_tokens=9, stop=("\n",))) == out
    assert len(_Handler.seen) == n
    # an adapter directory is registered with the server and used as the model name
    ad = make_lora(tiny, tmp_path / "ad", seed=4)
    g.set_adapter(ad)
    out2 = g.generate(prompts[:2], GenSpec(max_new_tokens=9, stop=("\n",)))
    loads = [b for path, b in _Handler.seen if path.endswith("/load_lora_adapter")]
    assert len(loads) == 1 and loads[0]["lora_path"] == str(ad.resolve())
    assert all(loads[0]["lora_name"] in o for o in out2)


def test_full_checkpoint_replaces_model_and_progress_and_sampling(tiny, tiny_model, tmp_path):
    other = tiny_model("chars", seed=21)  # a "fully finetuned" checkpoint
    spec = GenSpec(max_new_tokens=8)
    g = Generator(str(tiny), batch_size=4)
    base = g.generate(PROMPTS[:6], spec)
    g.set_adapter(other)
    seen: list[tuple[int, int]] = []
    swapped = g.generate(PROMPTS[:6], spec, progress=lambda ev: seen.append((ev.done, ev.total)))
    assert g.stats["full_loads"] == 1 and swapped != base
    assert swapped == Generator(str(other), batch_size=4).generate(PROMPTS[:6], spec)
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # sampling: reproducible for a fixed batch size, and not the greedy output
    hot = GenSpec(max_new_tokens=8, temperature=5.0)
    s1 = g.generate(PROMPTS[:6], hot)
    assert s1 == g.generate(PROMPTS[:6], hot) and s1 != swapped


def test_progress_events_count_cached_prompts(loaded, tmp_path):
    from sftscale.events import ProgressEvent

    model, tok = loaded
    spec = GenSpec(max_new_tokens=4)
    g = Generator((model, tok), batch_size=2, cache_dir=tmp_path / "cache")
    g.generate(PROMPTS[:3], spec)
    seen: list[ProgressEvent] = []
    g.generate(PROMPTS[:5], spec, progress=seen.append)
    assert {e.stage for e in seen} == {"generate"} and {e.total for e in seen} == {5}
    assert seen[0].done == 3 and seen[-1].done == 5
    seen.clear()
    g.generate(PROMPTS[:5], spec, progress=seen.append)  # all cached: one final event
    assert [(e.done, e.total) for e in seen] == [(5, 5)]


def test_encode_is_the_one_bos_rule(loaded):
    from sftscale.generation import HFBackend
    from sftscale.models import encode_prompt

    model, tok = loaded
    b = HFBackend(model, tok, None, 1)
    for p in ["", "<s>already", "plain"]:
        assert b.encode(p) == encode_prompt(tok, p)


def test_cache_keyword_follows_the_models_forward(loaded):
    """transformers <= 5.17 takes ``past_key_values``, later ones ``cache``; the wrong name is
    swallowed by ``**kwargs`` and decoding silently loses its history, so pick by signature."""
    from sftscale.generation.hf import _cache_kwarg

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs): ...

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs): ...

    class Wrapped:  # peft's shape: the base model's forward decides
        def get_base_model(self):
            return Old()

    assert (_cache_kwarg(Old()), _cache_kwarg(New()), _cache_kwarg(Wrapped())) == \
        ("past_key_values", "cache", "past_key_values")
    model = loaded[0]
    import inspect

    assert _cache_kwarg(model) in inspect.signature(type(model).forward).parameters


def test_attention_backends_leave_out_cudnn_on_cuda_only():
    """cuDNN attention plans every new shape (~20 ms of CPU a call on an H200 in bf16): the
    forward passes of sftscale run without it on CUDA, and the switch is undone afterwards."""
    import torch

    from sftscale.models import attention_backends

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_backends("cpu"):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_backends(torch.device("cuda", 0)):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
