"""Tasks: the ``Task`` interface (``base``), the registry (``registry``) and the benchmarks.

``get_task(name, **options)`` builds a fresh task by registered name; ``task_names()`` lists
them; ``register_task(name)`` is the decorator a task module puts on its ``Task`` subclass (or
factory). The modules that hold tasks are listed in the ``sftscale.tasks`` entry-point group
and imported on the first lookup (see ``registry``), so importing this package loads no task.

Shipped here: ``gsm8k``, ``humaneval``, ``humaneval+``, ``ifeval``, ``fanoutqa``,
``multihop-file``; scoring helpers ``sandbox`` (running model-written code) and
``nltk_offline``. Other packages (sftscale's own and third-party ones) register theirs the
same way.
"""

from __future__ import annotations

from .base import GenSpec, Item, Task, mean_metrics
from .registry import get_task, register_task, task_names

__all__ = ["GenSpec", "Item", "Task", "get_task", "mean_metrics", "register_task", "task_names"]
