"""Remote and external generation backends for ``generator.Generator``.

- ``OpenAIBackend``: ``openai:<base_url>/v1/<served model name>``, an OpenAI-compatible
  completions client (stdlib ``urllib``) for vLLM / TGI / SGLang servers;
- ``VLLMBackend``: ``vllm:<model ref>``, vLLM's offline engine with multi-LoRA (imported
  lazily: a GPU-only dependency, not installed on CPU machines, so untested here).

Both follow ``backend.Backend``: ``set_adapter``, ``identity``,
``generate(prompts, spec, progress, on_batch)``, ``describe``, ``stats``, ``tok``, ``batch_size``.

Not handled: the chat endpoint (prompts are already templated strings; chat over a server
needs a local tokenizer), streaming, retries on HTTP errors, per-row token counts from servers
that only report a total (split evenly), resizing a running vLLM engine (``max_num_seqs`` is
fixed when it loads; a later ``batch_size`` only changes what ``describe`` reports).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..events import ProgressFn
from ..io import InputError
from ..tasks.base import GenSpec
from .backend import OnBatch, report, truncate_at_stop
from .checkpoint import checkpoint_hash, checkpoint_kind, resolve_checkpoint


# --------------------------------------------------------------------------- OpenAI server
def parse_openai_ref(ref: str) -> tuple[str, str]:
    """``openai:http://host:port/v1/<model>`` -> (``http://host:port/v1``, ``<model>``)."""
    body = ref[len("openai:"):]
    if "/v1/" not in body:
        raise InputError(None, f"{ref!r}: expected openai:<http://host:port>/v1/<model name>",
                         field="model")
    base, model = body.split("/v1/", 1)
    if not base.startswith(("http://", "https://")) or not model:
        raise InputError(None, f"{ref!r}: expected openai:<http://host:port>/v1/<model name>",
                         field="model")
    return base + "/v1", model


class OpenAIBackend:
    """POST /v1/completions with a list of prompts per request, several requests in flight.

    Adapters: ``set_adapter(name)`` uses ``name`` as the served model name (a LoRA module the
    server was started with, e.g. vLLM ``--lora-modules name=path``). ``set_adapter(dir)``
    asks the server to load it (vLLM ``POST /v1/load_lora_adapter``, needs
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) under a name derived from its hash. The cache
    identity is the URL, the served name and the adapter hash: the server is trusted to
    serve what it names.
    """

    name = "openai"

    def __init__(self, ref: str, batch_size: int | None, concurrency: int = 8, timeout_s: float = 600):
        self.base_url, self.model_name = parse_openai_ref(ref)
        self.batch_size: int | None = batch_size or 16
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.served = self.model_name
        self.adapter: str | None = None
        self.adapter_hash: str | None = None
        self.api_key = os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.stats = {"base_loads": 0, "adapter_loads": 0, "full_loads": 0}
        self.tok = None

    def _post(self, route: str, body: dict) -> dict:
        req = urllib.request.Request(
            f"{self.base_url}/{route}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read().decode("utf-8") or "{}")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:500]
            raise RuntimeError(f"{self.base_url}/{route}: HTTP {e.code}: {detail}") from None

    def set_adapter(self, path: str | os.PathLike | None) -> None:
        if path is None:
            self.served, self.adapter, self.adapter_hash = self.model_name, None, None
            return
        p = Path(path)
        if p.is_dir():
            p = resolve_checkpoint(p)
            h = checkpoint_hash(p)
            name = f"sftscale-{h[:12]}"
            self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(p.resolve())})
            self.stats["adapter_loads"] += 1
            self.served, self.adapter, self.adapter_hash = name, str(p), h
        else:
            self.served, self.adapter, self.adapter_hash = str(path), str(path), f"name:{path}"

    def identity(self) -> dict:
        return {"backend": "openai", "url": self.base_url, "model": self.model_name,
                "served": self.served, "adapter": self.adapter_hash}

    def generate(self, prompts: list[str], spec: GenSpec, progress: ProgressFn | None,
                 on_batch: OnBatch, seeds: list[int] | None = None) -> None:
        """Greedy: ``batch_size`` prompts per request. Sampling: one prompt per request with
        its row seed (``seed`` is per request in the OpenAI API, and the samples of one prompt
        need different seeds), ``top_p`` passed on; reproducible only as far as the server
        honours ``seed``."""
        stops = [s for s in spec.stop if s]
        bs = 1 if spec.sampling else (self.batch_size or 16)
        chunks = [list(range(i, min(i + bs, len(prompts)))) for i in range(0, len(prompts), bs)]

        def call(idx: list[int]) -> tuple[list[int], list[tuple[str, int]]]:
            body: dict[str, Any] = {"model": self.served, "prompt": [prompts[i] for i in idx],
                                    "max_tokens": spec.max_new_tokens,
                                    "temperature": spec.temperature}
            if spec.sampling:
                body.update(top_p=spec.top_p,
                            seed=(seeds[idx[0]] if seeds else spec.seed) % (2 ** 31))
            if stops:
                body["stop"] = stops
            res = self._post("completions", body)
            choices = sorted(res.get("choices", []), key=lambda c: c.get("index", 0))
            if len(choices) != len(idx):
                raise RuntimeError(f"{self.base_url}: asked {len(idx)} completions, got {len(choices)}")
            total = int((res.get("usage") or {}).get("completion_tokens", 0))
            per = [total // len(idx)] * len(idx)
            return idx, [(truncate_at_stop(c.get("text", ""), stops), n) for c, n in zip(choices, per)]

        done = 0
        with ThreadPoolExecutor(max_workers=self.concurrency) as ex:
            for idx, out in ex.map(call, chunks):
                on_batch(idx, out)
                done += len(idx)
                report(progress, done, len(prompts))

    def describe(self) -> dict:
        return {"backend": "openai", "url": self.base_url, "served_model": self.served,
                "batch_size": self.batch_size, "device": "server"}


# --------------------------------------------------------------------------- vLLM offline
class VLLMBackend:
    """vLLM's offline ``LLM`` with ``enable_lora=True``; adapters are ``LoRARequest``s, so
    swapping costs nothing. Untested here (no vLLM on CPU); kept small on purpose."""

    name = "vllm"

    def __init__(self, ref: str, batch_size: int | None):
        from vllm import LLM  # noqa: F401  (lazy: GPU-only dependency)

        from ..models import local_dir, model_weights_hash, resolve_model

        spec = resolve_model(ref)
        path = local_dir(spec) or spec.hub_id
        self.llm = LLM(model=str(path), enable_lora=True, max_lora_rank=64,
                       max_num_seqs=batch_size or 256)
        self.tok = self.llm.get_tokenizer()
        self.ref, self.batch_size = ref, batch_size
        self.base_hash = model_weights_hash(spec) or f"ref:{ref}"
        self.adapter: Path | None = None
        self.adapter_hash: str | None = None
        self._lora: Any = None
        self._ids: dict[str, int] = {}
        self.stats = {"base_loads": 1, "adapter_loads": 0, "full_loads": 0}

    def set_adapter(self, path: str | os.PathLike | None) -> None:
        from vllm.lora.request import LoRARequest

        if path is None:
            self._lora, self.adapter, self.adapter_hash = None, None, None
            return
        p = resolve_checkpoint(path)
        if checkpoint_kind(p) != "lora":
            raise InputError(p, "the vllm backend swaps LoRA adapters only", field="adapter")
        h = checkpoint_hash(p)
        if h not in self._ids:
            self._ids[h] = len(self._ids) + 1
            self.stats["adapter_loads"] += 1
        self._lora = LoRARequest(f"a{h[:16]}", self._ids[h], str(p))
        self.adapter, self.adapter_hash = p, h

    def identity(self) -> dict:
        return {"backend": "vllm", "base": self.base_hash, "adapter": self.adapter_hash}

    def generate(self, prompts: list[str], spec: GenSpec, progress: ProgressFn | None,
                 on_batch: OnBatch, seeds: list[int] | None = None) -> None:
        """Greedy: one SamplingParams. Sampling: one per prompt with its row seed and top_p."""
        from vllm import SamplingParams

        stops = [s for s in spec.stop if s]
        sp: Any = SamplingParams(temperature=spec.temperature, max_tokens=spec.max_new_tokens,
                                 stop=stops or None, seed=0)
        if spec.sampling:
            sp = [SamplingParams(temperature=spec.temperature, top_p=spec.top_p,
                                 max_tokens=spec.max_new_tokens, stop=stops or None,
                                 seed=(seeds[i] if seeds else spec.seed) % (2 ** 31))
                  for i in range(len(prompts))]
        outs = self.llm.generate(prompts, sp, lora_request=self._lora, use_tqdm=False)
        res = [(truncate_at_stop(o.outputs[0].text, stops), len(o.outputs[0].token_ids)) for o in outs]
        on_batch(list(range(len(prompts))), res)
        report(progress, len(prompts), len(prompts))

    def describe(self) -> dict:
        return {"backend": "vllm", "batch_size": self.batch_size or "auto", "device": "cuda"}


__all__ = ["OpenAIBackend", "VLLMBackend", "parse_openai_ref"]
