"""Run the same prompts through lm-evaluation-harness (``hf`` backend) and through sftscale.

Shared by ``tests/test_lmeval_parity.py`` and ``benchmarks/bench_generate_vs_lmeval.py``.
The lm-eval task is a LOCAL yaml written next to a local JSONL (``dataset_path: json`` with
``data_files``), zero-shot, ``generate_until`` with the same stop strings and max tokens as
``ParityTask.gen``, greedy; the metric is ``exact_match`` (response == target), which is
also what ``ParityTask`` scores. ``offline()`` sets the HF offline switches so neither
library can reach the network.

Few-shot gsm8k: ``write_gsm8k_task`` copies lm-eval's own ``gsm8k`` yaml onto local JSONL copies
of the shipped splits; ``lmeval_gsm8k_prompts`` builds its contexts without a model and
``lmeval_gsm8k_evaluate`` runs it end to end on an already loaded model.

Not handled: chat templates (both sides use plain prompts), lm-eval's other model backends.
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


GSM8K_TASK = "sftscale_gsm8k"


def write_gsm8k_task(workdir: Path, test_rows: Sequence[dict] | None = None) -> Path:
    """lm-eval's OWN ``gsm8k`` yaml (read from the installed package), with only the dataset
    swapped for local JSONL copies of sftscale's shipped train and test splits (same rows,
    same order as ``openai/gsm8k``) and the task renamed; everything else (prompt, target,
    delimiters, few-shot split, filters, generation kwargs) is lm-eval's. ``test_rows``
    replaces the test split (``{question, answer}`` records)."""
    import lm_eval
    import yaml

    from sftscale.data import load_records

    workdir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "test"):
        files[split] = str(workdir / f"gsm8k_{split}.jsonl")
        rows = test_rows if split == "test" and test_rows is not None else load_records("gsm8k", split)
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    cfg.pop("tag", None)
    cfg.pop("dataset_name", None)
    cfg.update(task=GSM8K_TASK, dataset_path="json", dataset_kwargs={"data_files": files})
    (workdir / f"{GSM8K_TASK}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return workdir


def lmeval_gsm8k_prompts(workdir: Path, num_fewshot: int, limit: int) -> list[str]:
    """The contexts lm-eval builds for the first ``limit`` gsm8k test items, as
    ``simple_evaluate`` does (``set_config(num_fewshot)``, ``set_fewshot_seed`` with its
    default seed, ``build_all_requests``), without running a model."""
    offline()
    from lm_eval.defaults import DEFAULT_OTHER_SEED
    from lm_eval.tasks import TaskManager

    write_gsm8k_task(workdir)
    task = TaskManager(include_path=str(workdir)).load([GSM8K_TASK])["tasks"][GSM8K_TASK]
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return [i.args[0] for i in sorted(task.instances, key=lambda i: i.doc_id)]


def lmeval_gsm8k_evaluate(lm: Any, workdir: Path, num_fewshot: int, limit: int,
                          test_rows: Sequence[dict] | None = None) -> dict[str, Any]:
    """``simple_evaluate`` of lm-eval's gsm8k (local copy) with an HFLM: prompts, responses
    and the strict / flexible exact-match accuracies."""
    offline()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    write_gsm8k_task(workdir, test_rows)
    out = simple_evaluate(model=lm, tasks=[GSM8K_TASK], num_fewshot=num_fewshot, limit=limit,
                          task_manager=TaskManager(include_path=str(workdir)), log_samples=True,
                          bootstrap_iters=0)
    samples = sorted(out["samples"][GSM8K_TASK], key=lambda s: s["doc_id"])
    first = {}
    for s in samples:  # one record per (doc, filter)
        first.setdefault(s["doc_id"], s)
    res = out["results"][GSM8K_TASK]
    return {"prompts": [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict)
                        else s["arguments"][0][0] for s in first.values()],
            "responses": [s["resps"][0][0] for s in first.values()],
            "strict": res["exact_match,strict-match"], "flexible": res["exact_match,flexible-extract"]}


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
