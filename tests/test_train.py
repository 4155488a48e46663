"""sftscale.train: subsets, steps rule, masks, recipes, and whole cells on a tiny random Llama.

The model comes from the ``tiny_model`` fixture (conftest.py) and the task is a small in-test Task
(single-digit additions), so nothing is downloaded and every cell trains in about a second.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli import run

from sftscale.io import InputError
from sftscale.tasks.base import Item, Task
from sftscale.train import IGNORE, Recipe, default_recipe, read_meta, recipe_with, select_subset, steps_for, train_cell
from sftscale.train.examples import check_masks, encode_pair, pack_examples


class AddTask(Task):
    name = "tiny-add"
    version = "1"

    def __init__(self, n: int = 48, completion: str = " {s} ####"):
        r = random.Random(0)
        self._items = []
        for i in range(n):
            a, b = r.randint(0, 9), r.randint(0, 9)
            self._items.append(Item(id=f"add/{i}", question=f"What is {a} plus {b}?",
                                    target=str(a + b), completion=completion.format(s=a + b)))

    def test_items(self):
        return self._items[:8]

    def train_items(self):
        return self._items

    def prompt_text(self, item):
        return f"Question: {item.question}\nAnswer:"

    def score(self, item, response):
        return {"format_ok": "####" in response, "correct": response.strip().startswith(item.target)}


TEXTS = ["Question: What is plus ? Answer: ####"]


@pytest.fixture(scope="module")
def tiny(tiny_model) -> Path:
    return tiny_model("words", texts=TEXTS, hidden=32)


def fast_recipe(**kw) -> Recipe:
    base = dict(method="full", lr=1e-3, batch_size=8, micro_batch_size=4, epochs=1, min_steps=3,
                max_length=64, warmup_ratio=0.0)
    base.update(kw)
    return Recipe(**base)


def weights(d: Path) -> dict:
    from safetensors.torch import load_file

    f = "adapter_model.safetensors" if (d / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(d / f))


# --------------------------------------------------------------------------- subsets
def test_subsets_are_nested_seeded_and_order_free():
    ids = [f"x/{i}" for i in range(100)]
    for seed in (0, 1, 7):
        small, big = select_subset(ids, 10, seed), select_subset(ids, 60, seed)
        assert big[:10] == small and len(set(big)) == 60
    assert select_subset(ids, 30, 0) != select_subset(ids, 30, 1)
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    assert select_subset(shuffled, 30, 4) == select_subset(ids, 30, 4)
    assert select_subset(ids, 0, 0) == []
    assert sorted(select_subset(ids, 100, 2)) == sorted(ids)


def test_n_over_pool_is_an_error_not_a_cap():
    with pytest.raises(InputError, match="exceeds the training pool"):
        select_subset(["a", "b", "c"], 4, 0)


def test_steps_rule():
    r = Recipe(epochs=3, batch_size=16, min_steps=30)
    assert steps_for(8, r)[0] == 30
    assert steps_for(1000, r)[0] == 188  # ceil(3000 / 16)
    steps, rule = steps_for(1000, r.model_copy(update={"max_steps": 100}))
    assert steps == 100 and "max_steps=100" in rule
    assert steps_for(0, r)[0] == 0
    assert steps_for(64, Recipe(epochs=2, batch_size=16, min_steps=0), rows=5)[0] == 1


# --------------------------------------------------------------------------- masks
def test_encode_pair_masks_prompt_and_ends_with_eos(tiny):
    from sftscale.models import load_tokenizer

    tok = load_tokenizer(tiny)
    ids, labels, plen, cut = encode_pair(tok, "Question: What is 2 plus 3?\nAnswer:", " 5 ####", 64)
    assert cut == 0 and len(ids) == len(labels)
    assert labels[:plen] == [IGNORE] * plen
    assert labels[plen:] == ids[plen:] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[plen:-1]) == " 5 ####"
    ids2, labels2, _, cut2 = encode_pair(tok, "Question: What is 2 plus 3?\nAnswer:", " 5 ####", plen + 2)
    assert cut2 == len(ids) - (plen + 2) and len(ids2) == plen + 2


def test_check_masks_rejects_unmasked_prompt_and_all_masked():
    good = [([1, 2, 3, 4], [IGNORE, IGNORE, 3, 4])]
    assert check_masks(good, [2]) == 2
    with pytest.raises(ValueError, match="prompt tokens are not masked"):
        check_masks([([1, 2, 3, 4], [1, IGNORE, 3, 4])], [2], ids=["bad/1"])
    with pytest.raises(ValueError, match="every target token is masked"):
        check_masks([([1, 2, 3], [IGNORE] * 3)], [3])


def test_prompt_longer_than_max_length_is_reported(tiny, tmp_path):
    with pytest.raises(InputError, match="max_length"):
        train_cell(str(tiny), AddTask(), 4, 0, tmp_path / "c", recipe=fast_recipe(max_length=4))


def test_pack_examples_respects_max_length_and_positions():
    ex = [([1] * 5, [IGNORE] * 5), ([2] * 4, [2] * 4), ([3] * 6, [3] * 6)]
    rows = pack_examples(ex, 10)
    assert [len(r[0]) for r in rows] == [9, 6]
    assert rows[0][2] == [0, 1, 2, 3, 4, 0, 1, 2, 3]


# --------------------------------------------------------------------------- recipes
def test_recipe_yaml_errors_name_line_and_field(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("lr: 0.001\nepochs: 2\nlora_rank: 8\n")
    with pytest.raises(InputError) as e:
        Recipe.from_yaml(p)
    assert e.value.line == 3 and e.value.field == "lora_rank"
    p.write_text("lr: 0.001\nbatch_size: -1\n")
    with pytest.raises(InputError) as e:
        Recipe.from_yaml(p)
    assert e.value.line == 2 and e.value.field == "batch_size"
    p.write_text("lr: 0.0005\nmethod: full\n")
    r = Recipe.from_yaml(p, base=Recipe(epochs=5))
    assert (r.lr, r.method, r.epochs) == (0.0005, "full", 5)


def test_default_recipes_toy_vs_real(tiny, tmp_path):
    real = default_recipe("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (real.method, real.lora_r, real.lora_alpha, real.epochs, real.batch_size) == \
        ("lora", 32, 64, 3, 16)
    assert 1e-4 <= real.lr <= 2e-4 and real.schedule == "cosine" and real.warmup_ratio == 0.03
    toy_dir = tmp_path / "toy"
    toy_dir.mkdir()
    (toy_dir / "config.json").write_text((tiny / "config.json").read_text())
    (toy_dir / "toy_meta.json").write_text("{}")
    toy = default_recipe(str(toy_dir))
    # the toy recipe's steps: early stopping within a budget of 40 to 200 steps (it was a
    # fixed floor of 60 until the per-N schedule; docs/toy-models.md, "Steps per N")
    assert toy.method == "full" and toy.lr == 1e-3 and toy.min_steps == 40
    assert toy.early_stopping and (toy.max_steps, toy.patience) == (200, 3)
    assert default_recipe(str(tiny)).method == "lora"  # a plain directory is a real model
    # a toy model's own defaults (toy_meta.json "sft_defaults") win over the shared ones
    (toy_dir / "toy_meta.json").write_text('{"sft_defaults": {"lr": 0.0003, "epochs": 4}}')
    own = default_recipe(str(toy_dir))
    assert (own.lr, own.epochs, own.method, own.min_steps) == (3e-4, 4, "full", 40)
    assert own.early_stopping  # the shared fields the model does not override stay
    assert recipe_with(str(toy_dir), {"epochs": 2}).lr == 3e-4


def test_shipped_toy_models_use_their_own_defaults():
    import json

    from sftscale.toyworld import TOY_MODELS, toy_model_path
    from sftscale.toyworld.pretrain import SFT_DEFAULTS

    for name in TOY_MODELS:
        meta = json.loads((toy_model_path(name) / "toy_meta.json").read_text())
        own = meta["sft_defaults"]
        assert own == SFT_DEFAULTS[meta["size"]]  # what pretrain-toy writes for that size
        rec = default_recipe(name)
        assert all(getattr(rec, k) == v for k, v in own.items()), (name, own)


# --------------------------------------------------------------------------- cells
def test_cell_n0_records_base_without_training(tiny, tmp_path):
    meta = train_cell(str(tiny), AddTask(), 0, 0, tmp_path / "c0")
    assert meta["n"] == 0 and meta["trained"] is False and meta["base_model"] == str(tiny)
    assert meta["subset_ids"] == [] and not (tmp_path / "c0" / "ckpt").exists()
    assert read_meta(tmp_path / "c0")["n"] == 0


def test_full_cell_reproducible_and_idempotent(tiny, tmp_path):
    task = AddTask()
    m1 = train_cell(str(tiny), task, 16, 3, tmp_path / "a", recipe=fast_recipe())
    m2 = train_cell(str(tiny), task, 16, 3, tmp_path / "b", recipe=fast_recipe())
    w1, w2 = weights(tmp_path / "a" / "ckpt"), weights(tmp_path / "b" / "ckpt")
    assert w1.keys() == w2.keys() and all((w1[k] == w2[k]).all() for k in w1)
    base = weights(tiny)
    assert any(not (w1[k] == base[k]).all() for k in w1 if k in base)  # it did train
    assert m1["loss_curve"] == m2["loss_curve"] and m1["steps"] == 3
    assert m1["subset_ids"] == select_subset([it.id for it in task.train_items()], 16, 3)
    for key in ("steps_rule", "tokens_seen", "target_tokens", "weights_hash", "chat_template_sha",
                "versions", "tokens_per_s", "recipe", "subset_sha", "device", "dtype"):
        assert key in m1, key
    assert m1["weights_hash"] and m1["versions"]["torch"]
    # a finished cell is recognised and not redone
    meta_file = tmp_path / "a" / "train_meta.json"
    before = meta_file.stat().st_mtime_ns
    again = train_cell(str(tiny), task, 16, 3, tmp_path / "a", recipe=fast_recipe())
    assert again == m1 and meta_file.stat().st_mtime_ns == before
    # ... but a different request for the same directory is refused
    with pytest.raises(InputError, match="different n"):
        train_cell(str(tiny), task, 8, 3, tmp_path / "a", recipe=fast_recipe())
    # another seed gives another subset and other weights
    m3 = train_cell(str(tiny), task, 16, 4, tmp_path / "c", recipe=fast_recipe())
    assert m3["subset_ids"] != m1["subset_ids"]


def test_a_finished_cell_of_other_base_weights_is_refused(tiny, tmp_path):
    """Same reference, new weights (a re-pretrained model): the old cell is not reused."""
    import shutil

    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    shutil.copytree(tiny, base)
    train_cell(str(base), AddTask(), 8, 0, tmp_path / "cell", recipe=fast_recipe())
    assert train_cell(str(base), AddTask(), 8, 0, tmp_path / "cell", recipe=fast_recipe())["n"] == 8
    f = base / "model.safetensors"
    w = load_file(f)
    k = next(iter(w))
    w[k] = w[k] + 1.0
    save_file(w, f, metadata={"format": "pt"})
    with pytest.raises(InputError, match="other weights") as ei:
        train_cell(str(base), AddTask(), 8, 0, tmp_path / "cell", recipe=fast_recipe())
    assert ei.value.field == "weights_hash"


def test_partial_cell_is_cleaned_and_redone(tiny, tmp_path):
    out = tmp_path / "p"
    (out / "ckpt").mkdir(parents=True)
    (out / "ckpt" / "stale.bin").write_text("half written")
    (out / "train_meta.json").write_text('{"n": 4')  # torn meta: not a finished cell
    meta = train_cell(str(tiny), AddTask(), 8, 0, out, recipe=fast_recipe())
    assert "ckpt" in meta["cleaned_partial"]
    assert not (out / "ckpt" / "stale.bin").exists() and (out / "ckpt" / "model.safetensors").exists()
    assert json.loads((out / "train_meta.json").read_text())["complete"] is True


def test_lora_cell_saves_adapter_that_changes_outputs(tiny, tmp_path):
    import torch
    from peft import PeftModel

    from sftscale.models import load_model

    rec = fast_recipe(method="lora", lora_r=4, lora_alpha=8, lr=5e-3, min_steps=4)
    meta = train_cell(str(tiny), AddTask(), 16, 0, tmp_path / "l", recipe=rec)
    ckpt = tmp_path / "l" / "ckpt"
    assert (ckpt / "adapter_config.json").exists() and (ckpt / "adapter_model.safetensors").exists()
    assert meta["trainable_params"] < meta["params"] and meta["checkpoint_kind"] == "lora"
    base, tok = load_model(tiny)
    x = tok("Question: What is 1 plus 2?\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        ref = base(**x).logits
        tuned = PeftModel.from_pretrained(base, str(ckpt))(**x).logits
    assert not torch.allclose(ref, tuned)


def test_chat_cell_uses_template_and_records_its_sha(tiny, tmp_path):
    from sftscale.models import load_tokenizer, template_sha

    meta = train_cell(str(tiny), AddTask(), 8, 0, tmp_path / "chat", recipe=fast_recipe(chat=True))
    assert meta["chat"] is True
    assert meta["chat_template_sha"] == template_sha(load_tokenizer(tiny), True)
    plain = train_cell(str(tiny), AddTask(), 8, 0, tmp_path / "plain", recipe=fast_recipe())
    assert plain["chat_template_sha"] != meta["chat_template_sha"]


def test_packing_cell_trains_on_fewer_rows(tiny, tmp_path):
    meta = train_cell(str(tiny), AddTask(), 16, 0, tmp_path / "pk",
                      recipe=fast_recipe(packing=True, max_length=64, min_steps=1))
    assert meta["packing"] and meta["rows"] < 16 and meta["steps"] >= 1
    assert meta["target_tokens_per_epoch"] > 0


def test_progress_callback_gets_steps(tiny, tmp_path):
    events = []
    train_cell(str(tiny), AddTask(), 8, 0, tmp_path / "pr", recipe=fast_recipe(), progress=events.append)
    seen = [ev.metrics for ev in events]
    assert [m["step"] for m in seen] == [0, 1, 2] and seen[0]["steps"] == 3
    assert all(m["tokens_per_s"] > 0 for m in seen)
    # the one progress event type: stage "train", done of total steps, loss and lr in metrics
    assert [(ev.stage, ev.done, ev.total) for ev in events] == [("train", k, 3) for k in (1, 2, 3)]
    assert events[-1].describe() == "train step 3/3"
    assert all({"loss", "lr", "tokens_seen", "elapsed_s"} <= set(m) for m in seen)


def test_cli_train_gsm8k_cell_and_bad_n(tiny, tmp_path):
    rec = tmp_path / "r.yaml"
    rec.write_text("method: full\nbatch_size: 4\nmicro_batch_size: 4\nepochs: 1\nmax_length: 512\n")
    res = run("train", "--model", tiny, "--task", "gsm8k", "--n", "4", "--seed", "0",
              "--out", tmp_path / "cell", "--recipe", rec, "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n"] == 4 and summary["steps"] == 1 and summary["checkpoint"] == "ckpt"
    assert read_meta(tmp_path / "cell")["task"] == "gsm8k"
    bad = run("train", "--model", tiny, "--task", "gsm8k", "--n", "100000",
              "--out", tmp_path / "bad", "-q")
    assert bad.exit_code == 2 and "exceeds the training pool" in bad.output
    rec.write_text("lr: -1\n")
    worse = run("train", "--model", tiny, "--task", "gsm8k", "--n", "4",
                "--out", tmp_path / "bad2", "--recipe", rec, "-q")
    assert worse.exit_code == 2 and "line 1" in worse.output
