"""The task registry: tasks register themselves; modules that hold tasks are found by entry point.

A task module registers each task where it is defined::

    from sftscale.tasks import Task, register_task

    @register_task("my-task")
    class MyTask(Task):
        name = "my-task"
        ...

``register_task(name, factory)`` also works as a plain call; a factory is a ``Task`` subclass or
any callable that takes keyword options and returns a ``Task``.

Discovery: the Python entry-point group ``sftscale.tasks`` lists the MODULES that hold tasks
(``name = "package.module"``). sftscale's own modules are listed in its ``pyproject.toml``; a
third-party package adds tasks by listing its modules in the same group of its own metadata,
without editing sftscale. The first lookup (``get_task``, ``task_names``) imports every listed
module: sftscale's own first, then the others, each part sorted by entry-point name;
``task_names()`` follows that order (then registration order within a module). When sftscale
itself is not installed (run from a source tree), its own list is read from the
``pyproject.toml`` beside the package (``tomllib``: Python >= 3.11, as sftscale requires). A
third-party module that fails to import is skipped with a warning (named again in the
"unknown task" error); one of sftscale's own modules that fails to import raises.

``get_task(name, **options)`` builds a FRESH instance on every call (tasks cache their data
loading at module level where it is expensive, never the instance). An unknown name or an
option the factory does not accept is an ``InputError`` (field ``task`` or ``task option
'KEY'``) listing what is known; a ``ValueError`` or ``TypeError`` raised by the factory itself
(a bad option value) becomes an ``InputError`` with field ``task options``.

Not handled: a changed entry-point table before reinstalling (``pip install -e .`` writes the
metadata; until then an installed sftscale uses its old list), unregistering, two tasks under
one name (the second registration raises), entry points that name an attribute
(``module:attr``: the module is imported, the attribute ignored), options checked against a
factory whose signature cannot be read (it is then called as is).
"""

from __future__ import annotations

import importlib
import inspect
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from ..io import InputError
from .base import Task

GROUP = "sftscale.tasks"

# name -> (factory, module of the factory, registration number)
_FACTORIES: dict[str, tuple[Callable[..., Task], str, int]] = {}
_MODULES: list[str] = []  # entry-point modules in import order, once discovered
_BROKEN: dict[str, str] = {}  # third-party module -> why it did not import
_LOCK = threading.RLock()
_discovered = False


def register_task(name: str, factory: Callable[..., Task] | None = None) -> Any:
    """Register ``factory`` under ``name``; without ``factory``, a class/function decorator."""
    if factory is None:
        return lambda f: register_task(name, f)
    if not name or not isinstance(name, str):
        raise ValueError(f"a task name must be a non-empty string, not {name!r}")
    if isinstance(factory, type) and issubclass(factory, Task) and factory.name != name:
        raise ValueError(f"task class {factory.__qualname__} has name {factory.name!r} but is "
                         f"registered as {name!r}")
    module = getattr(factory, "__module__", "?")
    with _LOCK:
        old = _FACTORIES.get(name)
        if old is not None and (old[1], _qualname(old[0])) != (module, _qualname(factory)):
            raise ValueError(f"task {name!r} is registered twice: {old[1]}.{_qualname(old[0])} "
                             f"and {module}.{_qualname(factory)}")
        _FACTORIES[name] = (factory, module, old[2] if old else len(_FACTORIES))
    return factory


def task_names() -> list[str]:
    """Every registered name: by entry-point module, then in registration order."""
    _discover()
    rank = {m: i for i, m in enumerate(_MODULES)}
    return sorted(_FACTORIES, key=lambda n: (rank.get(_FACTORIES[n][1], len(rank)),
                                             _FACTORIES[n][2]))


def task_version(name: str) -> str:
    """The registered task's ``version`` without building it ("" for an unknown name or a
    factory that does not say)."""
    _discover()
    entry = _FACTORIES.get(name)
    return str(getattr(entry[0], "version", "")) if entry else ""


def get_task(name: str, **options: Any) -> Task:
    """A fresh task instance by registered name; ``options`` go to its factory."""
    _discover()
    entry = _FACTORIES.get(name)
    if entry is None:
        broken = "".join(f"; not loaded: {m} ({why})" for m, why in _BROKEN.items())
        raise InputError(None, f"unknown task {name!r}; known: {', '.join(task_names())}{broken}",
                         field="task")
    factory = entry[0]
    _check_options(name, factory, options)
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:  # the factory refusing an option's value
        raise InputError(None, f"task {name!r}: {e}", field="task options") from None


def _check_options(name: str, factory: Callable[..., Task], options: dict) -> None:
    """InputError for an option the factory's signature does not accept."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no readable signature: let the factory decide
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in known:
            raise InputError(None, f"task {name!r} has no option {key!r}; options: "
                             f"{', '.join(known) or 'none'}", field=f"task option {key!r}")
    missing = [p.name for p in params if p.default is p.empty and p.name in known
               and p.name not in options]
    if missing:
        raise InputError(None, f"task {name!r} needs the option(s) {', '.join(missing)}",
                         field=f"task option {missing[0]!r}")


def _discover() -> None:
    """Import every module of the entry-point group once (see the module docstring)."""
    global _discovered
    if _discovered:
        return
    with _LOCK:
        if _discovered:
            return
        _discovered = True  # set first: a module that looks a task up while importing sees no loop
        _MODULES.clear()
        for module, own in _entry_modules():
            try:
                importlib.import_module(module)
            except Exception as e:
                if own:
                    _discovered = False
                    raise
                _BROKEN[module] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                warnings.warn(f"sftscale: task module {module!r} (entry point group {GROUP!r}) "
                              f"did not import: {_BROKEN[module]}", RuntimeWarning, stacklevel=2)
                continue
            _MODULES.append(module)


def _entry_modules() -> list[tuple[str, bool]]:
    """(module, is sftscale's own) of the group without repeats: sftscale's own first, each
    part sorted by entry-point name."""
    import importlib.metadata

    pairs: dict[str, tuple[str, bool]] = {}  # module -> (entry-point name, own)
    own_found = False
    for ep in importlib.metadata.entry_points(group=GROUP):
        own = _dist_name(ep) == "sftscale"
        own_found |= own
        pairs.setdefault(ep.value.split(":")[0].strip(), (ep.name, own))
    if not own_found:
        for ep_name, module in _source_tree_entries():
            pairs.setdefault(module, (ep_name, True))
    order = sorted(pairs.items(), key=lambda kv: (not kv[1][1], kv[1][0], kv[0]))
    return [(m, own) for m, (_, own) in order]


def _dist_name(ep: Any) -> str | None:
    name = getattr(getattr(ep, "dist", None), "name", None)
    return name.lower().replace("_", "-") if name else None


def _source_tree_entries() -> list[tuple[str, str]]:
    """sftscale's own group from ``pyproject.toml`` beside the package (source-tree runs)."""
    import tomllib

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if data.get("project", {}).get("name") != "sftscale":
        return []
    group = data["project"].get("entry-points", {}).get(GROUP, {})
    return [(k, str(v).split(":")[0].strip()) for k, v in group.items()]


def _qualname(f: Any) -> str:
    return getattr(f, "__qualname__", repr(f))


__all__ = ["GROUP", "get_task", "register_task", "task_names"]
