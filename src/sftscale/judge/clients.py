"""Judge clients: an OpenAI-compatible chat endpoint, or a local model run in-process.

``make_client(ref, ...)``:

- ``openai:http://host:port/v1/<model>`` -> ``ChatClient``: ``POST <base>/chat/completions``
  (vLLM, ``transformers serve``, SGLang, a hosted API) with httpx; ``Authorization: Bearer
  $OPENAI_API_KEY`` when that variable is set. ``concurrency`` requests in flight (a thread
  pool), each with a ``timeout_s`` limit; a timeout, a connection error, HTTP 429 or 5xx is
  retried ``retries`` times with exponential backoff (``backoff_s`` × 2^k, at most 30 s).
  Another 4xx, or a 200 whose body is not a chat completion, fails at once. The judge's
  identity (the cache key's part) is the served model name, not the URL. A request that
  still fails is reported ``failed`` with the last error; the run goes on.
- anything else -> ``LocalClient``: a model reference for ``generation.Generator`` (toy name,
  local directory, hub id, GGUF), prompts batched through its decode loop (greedy). The chat
  template is applied when the tokenizer has one (otherwise the messages are joined as plain
  text), and the assistant's answer is started with ``LABEL:``: the model writes the label
  and reason after it (small models rarely start the line themselves), and the parser reads
  ``LABEL:`` + its completion. The label itself is still the model's: nothing is filled in.

Both call ``on_result(index, status, text, error)`` as each request finishes, in the caller's
thread, so the caller can cache each answer at once. ``status``: ``answered`` or ``failed``.

Not handled: streaming, the legacy completions endpoint, per-request cost accounting, rate
limits announced in headers (a 429 is retried like a 5xx).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence

OnResult = Callable[[int, str, str, str], None]
TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ChatClient:
    kind = "openai"

    def __init__(self, ref: str, concurrency: int = 8, timeout_s: float = 60.0, retries: int = 3,
                 backoff_s: float = 1.0, max_tokens: int = 96):
        from ..generation.remote import parse_openai_ref

        self.ref = ref
        self.base_url, self.model = parse_openai_ref(ref)
        self.concurrency, self.timeout_s = max(1, int(concurrency)), float(timeout_s)
        self.retries, self.backoff_s, self.max_tokens = max(0, int(retries)), float(backoff_s), max_tokens
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "failed": 0}
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def identity(self) -> dict:
        # the served model name, not the URL: the same model moved to another host or port
        # keeps its answers (a different model under the same name is not detected)
        return {"kind": "openai", "model": self.model, "max_tokens": self.max_tokens}

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _one(self, http: Any, msgs: list[dict]) -> tuple[str, str, str]:
        """(status, text, error) of one request, after its retries."""
        import httpx

        body = {"model": self.model, "messages": msgs, "temperature": 0.0, "max_tokens": self.max_tokens}
        err = ""
        for attempt in range(self.retries + 1):
            self._count("attempts")
            if attempt:
                self._count("retries")
                time.sleep(min(30.0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                r = http.post(f"{self.base_url}/chat/completions", json=body, headers=self._headers(),
                              timeout=self.timeout_s)
            except httpx.TimeoutException:
                err = f"timed out after {self.timeout_s:g} s"
                continue
            except httpx.TransportError as e:
                err = f"connection error: {type(e).__name__}: {e}"
                continue
            if r.status_code in TRANSIENT_STATUS:
                err = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code != 200:
                return "failed", "", f"HTTP {r.status_code}: {r.text[:200]}"
            try:
                content = r.json()["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError(type(content).__name__)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                return "failed", "", f"not a chat completion ({type(e).__name__}): {r.text[:200]}"
            return "answered", content, ""
        return "failed", "", err

    def run(self, conversations: Sequence[list[dict]], on_result: OnResult) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        with httpx.Client(limits=limits) as http, ThreadPoolExecutor(self.concurrency) as pool:
            futs = {pool.submit(self._one, http, m): i for i, m in enumerate(conversations)}
            try:
                for f in as_completed(futs):
                    status, text, err = f.result()
                    self.stats["requests"] += 1
                    self.stats["failed"] += status == "failed"
                    on_result(futs[f], status, text, err)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise


class LocalClient:
    kind = "local"

    def __init__(self, ref: Any, batch_size: int | None = None, max_tokens: int = 64,
                 chunk: int | None = None, device: str | None = None):
        from ..generation import Generator

        self.ref = ref
        self.gen = Generator(ref, batch_size=batch_size, device=device)
        # prompts per generate call: each call's answers are handed back (and cached) together,
        # so Ctrl-C loses at most one chunk; two batches keep the decode loop's batch full
        self.max_tokens, self.chunk = max_tokens, max(1, int(chunk or 2 * (batch_size or 16)))
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "failed": 0}
        tok = self.gen.tokenizer
        self.chat = bool(getattr(tok, "chat_template", None))

    def identity(self) -> dict:
        return {"kind": "local", "model": self.gen.identity(), "chat": self.chat, "answer_prefix": "LABEL:",
                "max_tokens": self.max_tokens}

    def prompt(self, msgs: list[dict]) -> str:
        """The templated prompt, ending with the answer's start ``LABEL:`` (the model goes on)."""
        if self.chat:
            return str(self.gen.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)) \
                + "LABEL:"
        return "\n\n".join(m["content"] for m in msgs) + "\nLABEL:"

    def run(self, conversations: Sequence[list[dict]], on_result: OnResult) -> None:
        from ..tasks.base import GenSpec

        spec = GenSpec(max_new_tokens=self.max_tokens, stop=("\n\n",))
        prompts = [self.prompt(m) for m in conversations]
        for start in range(0, len(prompts), self.chunk):
            part = prompts[start:start + self.chunk]
            outs = self.gen.generate(part, spec)
            for j, text in enumerate(outs):
                self.stats["requests"] += 1
                self.stats["attempts"] += 1
                on_result(start + j, "answered", "LABEL:" + text, "")


def make_client(ref: Any, concurrency: int = 8, timeout_s: float = 60.0, retries: int = 3,
                backoff_s: float = 1.0, batch_size: int | None = None,
                max_tokens: int | None = None) -> ChatClient | LocalClient:
    """A client for a judge reference (module docstring); ``max_tokens`` None: 96 for a server
    (room for a reason), 64 in-process."""
    if isinstance(ref, str) and ref.startswith("openai:"):
        return ChatClient(ref, concurrency=concurrency, timeout_s=timeout_s, retries=retries,
                          backoff_s=backoff_s, max_tokens=max_tokens or 96)
    return LocalClient(ref, batch_size=batch_size, max_tokens=max_tokens or 64)


__all__ = ["ChatClient", "LocalClient", "TRANSIENT_STATUS", "make_client"]
