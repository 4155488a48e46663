"""Early stopping on validation loss (``Recipe.early_stopping``): the split of the training pool,
the loop's choice of step, the saved weights, the meta, and the errors.

Models are tiny random Llamas (``sftscale.testing``): ``tiny_llama`` for the loop, the
``tiny_model`` fixture for whole cells. The cell task's completions are random digits, so the
validation loss first falls (the format: a digit, ``####``, end of text) and then rises (the
training digits are memorised): a run with a long budget stops early, whatever the seed.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from sftscale.io import InputError, sha256_json
from sftscale.tasks.base import Item, Task
from sftscale.testing import tiny_llama
from sftscale.train import Recipe, recipe_with, select_subset, train_cell
from sftscale.train.examples import IGNORE, split_pool
from sftscale.train.loop import LoopConfig, train_loop, val_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RandomDigitTask(Task):
    name = "tiny-random-digit"
    version = "1"

    def __init__(self, n: int = 120):
        r = random.Random(0)
        self._items = [Item(id=f"rd/{i}", question=f"What is {r.randint(0, 9)} plus {r.randint(0, 9)}?",
                            target="0", completion=f" {r.randint(0, 9)} ####") for i in range(n)]

    def test_items(self):
        return self._items[:4]

    def train_items(self):
        return self._items

    def prompt_text(self, item):
        return f"Question: {item.question}\nAnswer:"

    def score(self, item, response):
        return {"format_ok": "####" in response, "correct": False}


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model("words", texts=["Question: What is plus ? Answer: ####"], hidden=32)


def es_recipe(**kw) -> Recipe:
    base = dict(method="full", lr=1e-2, batch_size=8, micro_batch_size=8, epochs=1, min_steps=60,
                max_steps=60, max_length=64, warmup_ratio=0.0, early_stopping=True, val_items=16,
                eval_every=3, patience=2)
    base.update(kw)
    return Recipe(**base)


# --------------------------------------------------------------------------- the split
def test_validation_ids_are_disjoint_from_every_subset_and_subsets_stay_nested():
    ids = [f"p/{i}" for i in range(300)]
    grid = [8, 16, 32, 64, 128, 256]
    vals = set()
    for seed in (0, 1, 2):
        prev: list[str] = []
        for n in grid:
            sub, val = split_pool(ids, n, seed, 40)
            vals.add(tuple(val))
            assert len(val) == 40 and len(set(val)) == 40 and set(val) <= set(ids)
            assert not set(sub) & set(val) and len(set(sub)) == n
            assert sub[:len(prev)] == prev  # nested across N
            prev = sub
    assert len(vals) == 1  # one validation split for every N and seed of the grid
    # the subset is the usual seeded choice from the pool minus the validation items
    sub, val = split_pool(ids, 20, 5, 40)
    assert sub == select_subset([i for i in ids if i not in set(val)], 20, 5)
    # without early stopping: exactly today's subsets
    assert split_pool(ids, 20, 5, 0) == (select_subset(ids, 20, 5), [])
    with pytest.raises(InputError, match="plus val_items = 40") as e:
        split_pool(ids, 261, 0, 40)
    assert e.value.field == "val_items"
    split_pool(ids, 260, 0, 40)  # exactly the pool: fine


def test_toy_pools_hold_the_demo_grid_and_the_validation_items():
    from sftscale.tasks import get_task
    from sftscale.train import default_recipe

    rec = default_recipe("toy-S")
    assert rec.early_stopping
    for name in ("toy-math", "toy-multihop", "toy-code", "toy-instruct"):
        pool = [it.id for it in get_task(name).train_items()]
        sub, val = split_pool(pool, 1024, 1, rec.val_items)
        assert len(sub) == 1024 and not set(sub) & set(val), name


# --------------------------------------------------------------------------- the loop
def random_examples(n: int, seed: int, vocab: int = 97):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lp, lc = int(torch.randint(2, 8, (1,), generator=g)), int(torch.randint(3, 8, (1,), generator=g))
        ids = torch.randint(1, vocab, (lp + lc,), generator=g).tolist()
        out.append((ids, [IGNORE] * lp + ids[lp:]))
    return out


def stop_step(curve, patience: int, min_improvement: float, min_delta: float = 0.0) -> int:
    """The documented rule, written out: the step of the first evaluation that is the
    ``patience``-th in a row without an improvement (a loss below (1 - min_improvement) x the
    last improvement's, and at least min_delta below it); the last step when there is none."""
    ref, bad = None, 0
    for s, v in curve:
        if ref is None or v < min(ref * (1 - min_improvement), ref - min_delta):
            ref, bad = v, 0
        else:
            bad += 1
        if bad >= patience:
            return s
    return curve[-1][0]


def test_loop_keeps_the_weights_of_the_lowest_validation_loss():
    """The early-stopped run follows the long run's trajectory, stops after ``patience``
    evaluations without a new minimum, and ends holding exactly the long run's weights of the
    step of minimum validation loss (snapshotted from the progress events)."""
    base = tiny_llama()
    train, val = random_examples(16, 1), random_examples(16, 2)
    cfg = LoopConfig(steps=80, lr=1e-2, batch_size=8, micro_batch_size=8, seed=0, eval_every=4,
                     patience=1000)
    long_model, snaps = copy.deepcopy(base), {}

    def snap(ev):
        if "val_loss" in ev.metrics:
            snaps[ev.done] = {k: p.detach().clone() for k, p in long_model.named_parameters()}

    full = train_loop(long_model, train, cfg, pad_id=0, progress=snap, val_examples=val)
    assert full.steps == 80 and [s for s, _ in full.val_curve] == list(range(4, 81, 4))
    losses = [v for _, v in full.val_curve]
    best = full.val_curve[losses.index(min(losses))][0]
    assert full.best_step == best and full.best_val_loss == min(losses)

    short_model = copy.deepcopy(base)
    cfg2 = LoopConfig(**{**cfg.to_dict(), "patience": 2})
    res = train_loop(short_model, train, cfg2, pad_id=0, val_examples=val)
    expect_stop = stop_step(full.val_curve, 2, 0.0)
    assert expect_stop < 80, "the random-token task should overfit"
    assert res.steps == expect_stop and res.val_curve == full.val_curve[:len(res.val_curve)]
    k = [s for s, _ in res.val_curve]
    kept = res.val_curve[[v for _, v in res.val_curve].index(res.best_val_loss)][0]
    assert res.best_step == kept < res.steps and res.losses == full.losses[:res.steps]
    want = snaps[res.best_step]
    for name, p in short_model.named_parameters():
        assert torch.equal(p, want[name]), name
    assert k == list(range(4, res.steps + 1, 4))
    assert val_loss(short_model, val, 0, 8) == res.best_val_loss


def test_min_improvement_stops_sooner_and_still_keeps_the_lowest_loss():
    base = tiny_llama()
    train, val = random_examples(16, 5), random_examples(16, 6)
    cfg = LoopConfig(steps=60, lr=3e-3, batch_size=8, micro_batch_size=8, seed=0, eval_every=2,
                     patience=1000)
    full = train_loop(copy.deepcopy(base), train, cfg, pad_id=0, val_examples=val)
    stops = {}
    for rel in (0.0, 0.05):
        res = train_loop(copy.deepcopy(base), train, LoopConfig(**{**cfg.to_dict(), "patience": 2,
                                                                   "min_improvement": rel}),
                         pad_id=0, val_examples=val)
        assert res.steps == stop_step(full.val_curve, 2, rel)
        assert res.val_curve == full.val_curve[:len(res.val_curve)]
        assert res.best_val_loss == min(v for _, v in res.val_curve)
        stops[rel] = res.steps
    assert stops[0.05] < stops[0.0]


def test_min_delta_is_an_absolute_threshold():
    """An absolute threshold stops a curve whose relative gains are large but whose losses
    are tiny: the rule written out (``stop_step``) decides the step, and the kept weights are
    still those of the lowest loss seen."""
    base = tiny_llama()
    train, val = random_examples(16, 5), random_examples(16, 6)
    cfg = LoopConfig(steps=60, lr=3e-3, batch_size=8, micro_batch_size=8, seed=0, eval_every=2,
                     patience=1000)
    full = train_loop(copy.deepcopy(base), train, cfg, pad_id=0, val_examples=val)
    gains = [a - b for (_, a), (_, b) in zip(full.val_curve, full.val_curve[1:])]
    up = sorted(g for g in gains if g > 0)
    delta = up[len(up) // 2]  # a threshold that half the gains miss
    res = train_loop(copy.deepcopy(base), train,
                     LoopConfig(**{**cfg.to_dict(), "patience": 2, "min_delta": delta}),
                     pad_id=0, val_examples=val)
    assert res.steps == stop_step(full.val_curve, 2, 0.0, delta)
    assert res.steps < stop_step(full.val_curve, 2, 0.0)
    assert res.best_val_loss == min(v for _, v in res.val_curve)


def test_loop_evaluates_at_the_budget_and_without_val_examples_does_nothing_new():
    base = tiny_llama()
    train, val = random_examples(8, 3), random_examples(8, 4)
    cfg = LoopConfig(steps=7, lr=1e-3, batch_size=4, micro_batch_size=4, eval_every=3, patience=5)
    res = train_loop(copy.deepcopy(base), train, cfg, pad_id=0, val_examples=val)
    assert [s for s, _ in res.val_curve] == [3, 6, 7]  # and at the budget
    plain = train_loop(copy.deepcopy(base), train, cfg, pad_id=0)
    assert plain.val_curve == [] and plain.best_step == plain.steps == 7
    assert plain.losses == res.losses  # evaluating does not change the trajectory


# --------------------------------------------------------------------------- cells
def test_cell_early_stopping_meta_split_and_saved_weights(tiny, tmp_path):
    from sftscale.models import load_model
    from sftscale.train.examples import build_examples
    from sftscale.train.recipe import VAL_SEED

    task = RandomDigitTask()
    rec = es_recipe()
    meta = train_cell(str(tiny), task, 16, 0, tmp_path / "c", recipe=rec)
    for key in ("steps_budget", "steps", "steps_trained", "val_loss_curve", "best_val_loss",
                "stop_rule", "val_ids_sha", "steps_rule"):
        assert key in meta, key
    curve = meta["val_loss_curve"]
    losses = [v for _, v in curve]
    assert meta["steps_budget"] == 60 and meta["steps_trained"] < 60  # it stopped early
    assert meta["steps_trained"] == curve[-1][0] == len(meta["loss_curve"])
    assert meta["best_val_loss"] == min(losses)
    assert meta["steps"] == curve[losses.index(min(losses))][0] < meta["steps_trained"]
    assert all(v >= meta["best_val_loss"] for _, v in curve[-2:])  # patience 2 ran out
    assert "Stopped at step" in meta["stop_rule"] and f"kept step {meta['steps']}" in meta["steps_rule"]
    assert meta["final_loss"] == meta["loss_curve"][meta["steps"] - 1]
    # the validation items: the fixed-seed split of the pool, disjoint from the subset
    pool = [it.id for it in task.train_items()]
    sub, val = split_pool(pool, 16, 0, 16, VAL_SEED)
    assert meta["subset_ids"] == sub and meta["val_ids_sha"] == sha256_json(val)
    assert not set(val) & set(meta["subset_ids"])
    # the saved weights are the kept step's: their validation loss is the recorded minimum
    mdl, tok = load_model(tmp_path / "c" / "ckpt")
    by_id = {it.id: it for it in task.train_items()}
    ex, _, _ = build_examples(task, [by_id[i] for i in val], tok, rec.max_length, False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    assert val_loss(mdl, ex, pad, rec.micro_batch_size) == pytest.approx(meta["best_val_loss"], rel=1e-5)
    # and the run is reproducible
    again = train_cell(str(tiny), task, 16, 0, tmp_path / "d", recipe=rec)
    assert again["val_loss_curve"] == curve and again["steps"] == meta["steps"]


def test_recipe_fields_hash_and_errors(tiny, tmp_path):
    from pydantic import ValidationError

    r = Recipe()
    d = r.model_dump(mode="json")
    for k in ("sharding", "early_stopping", "val_items", "eval_every", "patience", "min_improvement",
              "min_delta"):
        del d[k]
    assert r.sha() == sha256_json(d)  # recipes written before the fields keep their hash
    assert Recipe(early_stopping=True).sha() != r.sha() != Recipe(patience=4).sha()
    for bad in ({"val_items": 0}, {"eval_every": 0}, {"patience": 0}, {"min_improvement": 1.0},
                {"min_delta": -0.1}):
        with pytest.raises(ValidationError):
            Recipe(**bad)
    with pytest.raises(InputError) as e:
        recipe_with(str(tiny), {"patience": 0})
    assert e.value.field == "patience"
    task = RandomDigitTask()
    for over, what in (({"train_backend": "trl"}, "train_backend"), ({"sharding": "ddp"}, "sharding")):
        with pytest.raises(InputError, match=what) as e:
            train_cell(str(tiny), task, 8, 0, tmp_path / what, recipe=es_recipe(**over))
        assert e.value.field == "early_stopping" and not (tmp_path / what).exists()
    with pytest.raises(InputError, match="val_items") as e:
        train_cell(str(tiny), task, 110, 0, tmp_path / "big", recipe=es_recipe())
    assert e.value.field == "val_items" and not (tmp_path / "big").exists()
    # N = 0 trains nothing and needs no validation items
    assert train_cell(str(tiny), task, 0, 0, tmp_path / "zero", recipe=es_recipe())["steps"] == 0


def test_recipe_search_split_avoids_the_early_stopping_items_and_subset():
    from sftscale.study.search import validation_ids
    from sftscale.train.recipe import VAL_SEED

    pool = [f"p/{i}" for i in range(200)]
    search = {"validation": {"n": 30, "seed": 3}}
    es, plain = Recipe(early_stopping=True, val_items=20), Recipe()
    sub, val = validation_ids(pool, 50, 1, search, [es, plain])
    es_sub, es_val = split_pool(pool, 50, 1, 20, VAL_SEED)
    assert sub == es_sub and len(val) == 30
    assert not set(val) & (set(es_sub) | set(es_val) | set(select_subset(pool, 50, 1)))
