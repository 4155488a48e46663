"""Run the same prompts through lm-evaluation-harness (``hf`` backend) and through sftscale.

Shared by ``tests/test_lmeval_parity.py`` and ``benchmarks/bench_generate_vs_lmeval.py``.
The lm-eval task is a LOCAL yaml written next to a local JSONL (``dataset_path: json`` with
``data_files``), zero-shot, ``generate_until`` with the same stop strings and max tokens as
``ParityTask.gen``, greedy; the metric is ``exact_match`` (response == target), which is
also what ``ParityTask`` scores. ``offline()`` sets the HF offline switches so neither
library can reach the network.

Not handled: chat templates (both sides use plain prompts), few-shot contexts, lm-eval's
other model backends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from sftscale.tasks.base import GenSpec, Item, Task

HERE = Path(__file__).resolve().parent
PROMPTS = HERE / "prompts.jsonl"
UNTIL = ("\n\n", "Question:")
MAX_GEN = 32
TASK_NAME = "sftscale_parity"


def offline() -> None:
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[k] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_rows(path: Path = PROMPTS) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


class ParityTask(Task):
    """The sftscale side of the parity task: prompt verbatim, exact-match scoring."""

    name = TASK_NAME
    version = "1"
    gen = GenSpec(max_new_tokens=MAX_GEN, stop=UNTIL)

    def __init__(self, rows: Sequence[dict], max_new_tokens: int = MAX_GEN):
        self.rows = list(rows)
        self.gen = GenSpec(max_new_tokens=max_new_tokens, stop=UNTIL)

    def test_items(self) -> list[Item]:
        return [Item(id=r["id"], question=r["prompt"], target=r["target"]) for r in self.rows]

    def prompt_text(self, item: Item) -> str:
        return item.question

    def score(self, item: Item, response: str) -> dict:
        return {"format_ok": bool(response.strip()), "correct": response == item.target}


def write_task(workdir: Path, rows: Sequence[dict], max_gen_toks: int = MAX_GEN) -> Path:
    """Write ``data.jsonl`` + ``sftscale_parity.yaml`` into ``workdir``; return it."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    q = json.dumps  # JSON strings are valid YAML flow scalars
    (workdir / f"{TASK_NAME}.yaml").write_text(f"""task: {TASK_NAME}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {q(str(data))}
output_type: generate_until
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
target_delimiter: ""
generation_kwargs:
  until: [{", ".join(q(u) for u in UNTIL)}]
  max_gen_toks: {max_gen_toks}
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
num_fewshot: 0
metadata:
  version: 1.0
""")
    return workdir


def lmeval_simple_evaluate(model_dir: Path, rows: Sequence[dict], workdir: Path,
                           batch_size: int = 8, max_gen_toks: int = MAX_GEN) -> dict[str, Any]:
    """Full lm-eval path (task yaml -> simple_evaluate). Returns accuracy and responses."""
    offline()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    write_task(workdir, rows, max_gen_toks)
    out = simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32"},
                          tasks=[TASK_NAME], task_manager=TaskManager(include_path=str(workdir)),
                          batch_size=batch_size, device="cpu", log_samples=True,
                          bootstrap_iters=0)
    samples = sorted(out["samples"][TASK_NAME], key=lambda s: s["doc_id"])
    return {"accuracy": out["results"][TASK_NAME]["exact_match,none"],
            "responses": [s["resps"][0][0] for s in samples],
            "prompts": [s["arguments"][0][0] if isinstance(s["arguments"][0], (list, tuple))
                        else s["arguments"]["gen_args_0"]["arg_0"] for s in samples]}


def lmeval_hflm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's HFLM around an already loaded model (so both sides share the weights)."""
    offline()
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")


def lmeval_generate(lm: Any, prompts: Sequence[str], max_gen_toks: int = MAX_GEN,
                    until: Sequence[str] = UNTIL) -> list[str]:
    """lm-eval's generate_until on raw prompts, as its evaluator calls it."""
    from lm_eval.api.instance import Instance

    kw = {"until": list(until), "max_gen_toks": max_gen_toks, "do_sample": False, "temperature": 0.0}
    reqs = [Instance("generate_until", {}, (p, dict(kw)), i) for i, p in enumerate(prompts)]
    return lm.generate_until(reqs, disable_tqdm=True)
