"""The task registry: self-registration, entry-point discovery, fresh instances, input errors."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from sftscale.io import InputError
from sftscale.tasks import Item, Task, get_task, register_task, registry, task_names

SHIPPED = ["gsm8k", "humaneval", "humaneval+", "ifeval", "fanoutqa", "multihop-file",
           "toy-math", "toy-multihop", "toy-math-ood", "toy-multihop-ood", "toy-knowledge",
           "toy-code", "toy-code-ood", "toy-instruct", "toy-instruct-ood"]


class _Echo(Task):
    name = "test-echo"

    def __init__(self, n: int = 2):
        self.n = n

    def test_items(self) -> list[Item]:
        return [Item(id=f"echo/{i}", question=str(i), target=str(i)) for i in range(self.n)]

    def prompt_text(self, item: Item) -> str:
        return item.question

    def score(self, item: Item, response: str) -> dict:
        ok = response.strip() == item.target
        return {"format_ok": ok, "correct": ok}


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry state that the test may change; restored afterwards."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_MODULES", list(registry._MODULES))
    monkeypatch.setattr(registry, "_BROKEN", dict(registry._BROKEN))
    return registry


def test_shipped_tasks_in_their_order():
    assert task_names() == SHIPPED


def test_get_task_builds_a_fresh_instance_every_call():
    a, b = get_task("toy-math", n_test=5), get_task("toy-math", n_test=5)
    assert a is not b and type(a) is type(b)
    assert a.test_items() == b.test_items() and len(a.test_items()) == 5
    a.gen = None  # changing one instance leaves the next one alone
    assert get_task("toy-math", n_test=5).gen is not None


def test_unknown_task_is_an_input_error_listing_the_names():
    with pytest.raises(InputError) as e:
        get_task("no-such-task")
    assert e.value.field == "task" and "unknown task 'no-such-task'" in e.value.reason
    assert all(n in e.value.reason for n in SHIPPED)


def test_bad_option_is_an_input_error_listing_the_options():
    with pytest.raises(InputError) as e:
        get_task("gsm8k", foo=1)
    assert e.value.field == "task option 'foo'"
    assert "no option 'foo'" in e.value.reason and "limit, path, train_path" in e.value.reason
    with pytest.raises(InputError) as e:  # a bad VALUE: the factory's own message, as input error
        get_task("toy-math", n_test=0)
    assert e.value.field == "task options" and "n_test" in e.value.reason


def test_register_task_decorator_duplicates_and_name_mismatch(fresh_registry):
    register_task("test-echo")(_Echo)
    assert "test-echo" in task_names() and task_names()[:len(SHIPPED)] == SHIPPED
    t = get_task("test-echo", n=3)
    assert isinstance(t, _Echo) and len(t.test_items()) == 3
    register_task("test-echo", _Echo)  # the same class again (a reload): fine

    class Other(_Echo):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register_task("test-echo", Other)
    with pytest.raises(ValueError, match="has name 'test-echo'"):
        register_task("another-name", _Echo)
    register_task("echo-factory", lambda **kw: _Echo(**kw))  # a factory with **options
    assert get_task("echo-factory", n=1).test_items()[0].id == "echo/0"


def test_third_party_entry_point_is_discovered_and_a_broken_one_is_named(
        fresh_registry, monkeypatch, tmp_path):
    (tmp_path / "sftscale_test_plugin.py").write_text(
        "from sftscale.tasks import register_task\n"
        "from sftscale.tasks.gsm8k import GSM8K\n\n"
        "@register_task('plugin-gsm8k')\n"
        "class PluginGSM8K(GSM8K):\n"
        "    name = 'plugin-gsm8k'\n")
    (tmp_path / "sftscale_test_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group=registry.GROUP)
           for n, v in [("plugin", "sftscale_test_plugin"), ("broken", "sftscale_test_broken")]]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: eps)
    monkeypatch.setattr(registry, "_discovered", False)
    with pytest.warns(RuntimeWarning, match="sftscale_test_broken"):
        names = task_names()
    # without sftscale's own metadata (as here) its list comes from the source pyproject.toml
    assert names[:len(SHIPPED)] == SHIPPED and names[len(SHIPPED):] == ["plugin-gsm8k"]
    assert get_task("plugin-gsm8k", limit=2).test_items()[0].id == "gsm8k/test/0"
    with pytest.raises(InputError, match="not loaded: sftscale_test_broken .RuntimeError: boom"):
        get_task("nope")


def test_source_tree_entries_match_the_installed_metadata():
    own = [(ep.name, ep.value) for ep in importlib.metadata.entry_points(group=registry.GROUP)
           if registry._dist_name(ep) == "sftscale"]
    src = registry._source_tree_entries()
    assert ("toyworld", "sftscale.toyworld.tasks") in src
    if own:  # an installed (editable) sftscale: its metadata is the pyproject's table
        assert sorted(own) == sorted(src)


def test_tasks_package_does_not_name_the_toy_world():
    tasks_dir = Path(registry.__file__).parent
    for f in tasks_dir.glob("*.py"):
        assert "toyworld" not in f.read_text(encoding="utf-8"), f
