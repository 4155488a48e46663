"""Task registry. Tasks are created lazily by name; nothing is loaded at import.

Register a task by adding its factory to ``_REGISTRY`` (``"name": "module:ClassName"``).
Factories take keyword options (e.g. ``limit`` or data ``path``) and return a Task.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from .base import GenSpec, Item, Task, mean_metrics

# name -> "module:attr" (module relative to sftscale); attr is a Task subclass or factory
_REGISTRY: dict[str, str] = {
    "gsm8k": "tasks.gsm8k:GSM8K",
    "humaneval": "tasks.humaneval:HumanEval",
    "humaneval+": "tasks.humaneval:HumanEvalPlus",
    "ifeval": "tasks.ifeval:IFEval",
    "fanoutqa": "tasks.multihop:FanOutQA",
    "multihop-file": "tasks.multihop:MultihopFile",
    "toy-math": "toyworld.tasks:ToyMath",
    "toy-multihop": "toyworld.tasks:ToyMultihop",
    "toy-knowledge": "toyworld.tasks:ToyKnowledge",
}


def task_names() -> list[str]:
    return list(_REGISTRY)


def get_task(name: str, **options) -> Task:
    """Build a task by registered name. Options go to its constructor."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(_REGISTRY)}")
    return _cached(name, tuple(sorted(options.items())))


@lru_cache(maxsize=64)
def _cached(name: str, options: tuple) -> Task:
    mod, attr = _REGISTRY[name].split(":")
    factory = getattr(importlib.import_module(f"sftscale.{mod}"), attr)
    return factory(**dict(options))


__all__ = ["GenSpec", "Item", "Task", "get_task", "mean_metrics", "task_names"]
