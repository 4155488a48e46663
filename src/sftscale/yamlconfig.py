"""THE YAML-to-InputError path of every config file (study, knowledge, recipe).

``parse_yaml`` (YAML text -> mapping + line index), ``validation_error`` (a pydantic
ValidationError -> InputError with file, line and field: ``models[1].ref``), ``validate_yaml``
(the two together) and ``strict_scalars`` (YAML scalars of the wrong kind refused where
pydantic's lax mode would convert them). The YAML is composed into a node tree whose marks give
the line of each key, and a pydantic error location is walked through that tree.

Not handled: what the fields mean (the schemas: config.py, knowledge/config.py, train/recipe.py);
YAML anchors/aliases are accepted, a key that appears twice in one mapping is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from .io import InputError


class _LocError(ValueError):
    """A validation error that knows which sub-field it is about (for the line number)."""

    def __init__(self, msg: str, *loc: Any):
        super().__init__(msg)
        self.loc = loc


def _kinds(ann: Any) -> set[Any]:
    """What a field's annotation takes, for ``strict_scalars``: "bool", "number", "other",
    or ("list", kind) for a list of them (None is left out: it is always allowed)."""
    import types
    import typing

    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _kinds(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(ann)))
    if origin is list:
        args = typing.get_args(ann)
        return {("list", k) for k in (_kinds(args[0]) if args else {"other"}) if isinstance(k, str)}
    if ann is type(None):
        return set()
    if ann is bool:
        return {"bool"}
    if ann in (int, float):
        return {"number"}
    return {"other"}


def strict_scalars(model: type[BaseModel], data: Any) -> Any:
    """A ``model_validator(mode="before")`` body: YAML scalars of the wrong kind are refused
    where pydantic's lax mode would convert them silently: ``true``/``false`` for a number
    (``limit: true`` is not 1) and a number or string for a boolean (``chat: 1``). Numeric
    strings for numbers stay accepted (PyYAML reads ``1e-4`` as a string)."""
    if not isinstance(data, dict):
        return data
    for name, f in model.model_fields.items():
        if name not in data or data[name] is None:
            continue
        kinds, v = _kinds(f.annotation), data[name]
        if kinds == {"number"} and isinstance(v, bool):
            raise _LocError(f"{str(v).lower()} is a boolean, not a number", name)
        if kinds == {"bool"} and not isinstance(v, bool):
            raise _LocError(f"{v!r} is not a boolean (write true or false)", name)
        if kinds == {("list", "number")} and isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, bool):
                    raise _LocError(f"{str(x).lower()} is a boolean, not a number", name, i)
    return data


def read_config_text(path: str | os.PathLike, what: str) -> tuple[str, Path]:
    """The text of a YAML config file (UTF-8, a BOM allowed); a missing file, a directory or
    another encoding is an InputError."""
    from .io import read_text_input

    p = Path(path)
    try:
        return read_text_input(p), p
    except FileNotFoundError:
        raise InputError(p, "no such file") from None
    except IsADirectoryError:
        raise InputError(p, f"is a directory, expected a {what} YAML file") from None
    except OSError as e:
        raise InputError(p, f"cannot read the {what} file: {e.strerror}") from None


def parse_yaml(text: str, where: str, top_hint: str, empty_ok: bool = False
               ) -> tuple[dict[str, Any], dict[tuple, int]]:
    """YAML text -> (its top-level mapping, {key path: line}). Invalid YAML, a top level that
    is not a mapping (an empty text too, unless ``empty_ok``: then ``{}``) and a key given twice
    in one mapping are InputErrors naming ``where`` and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise InputError(where, f"not valid YAML: {e.problem or e}",
                         line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise InputError(where, f"not valid YAML: {e}") from None
    if data is None and empty_ok:
        return {}, {}
    if not isinstance(data, dict):
        raise InputError(where, f"expected a mapping ({top_hint}) at the top level", line=1)
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines, where)
    return data, lines


def validation_error(e: ValidationError, model: type[BaseModel], where: str | os.PathLike | None,
                     lines: dict[tuple, int] | None = None, prefix: tuple = ()) -> InputError:
    """THE InputError for a pydantic ValidationError of ``model``: its first error, with the field
    path (``models[1].ref``, behind ``prefix``: where the data sits in a larger config), the line
    of that field from ``lines`` (``parse_yaml``'s index; None: the data came not from YAML
    text, and the location is reported as pydantic gives it), plain messages for unknown and
    missing fields, and how many more errors there are."""
    err = e.errors()[0]
    exc = (err.get("ctx") or {}).get("error")
    loc = tuple(err["loc"])
    if lines is not None:
        loc = _clean_loc(lines, loc, keep_last=err["type"] in ("missing", "extra_forbidden"))
    msg = err["msg"]
    if isinstance(exc, _LocError):
        loc = loc + tuple(exc.loc)
        msg = str(exc)
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = f"unknown field (allowed: {', '.join(_allowed_fields(model, loc))})"
    elif err["type"] == "missing":
        msg = "missing required field"
    more = len(e.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    line = _line_for(lines, loc) if lines is not None else None
    return InputError(where, msg, line=line, field=_loc_str(prefix + loc) or None)


def validate_yaml(text: str, model: type[BaseModel], where: str, top_hint: str
                  ) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML and validate it with a pydantic model; every error is an InputError naming
    the file, the line and the field. Returns (instance, {field path: line})."""
    data, lines = parse_yaml(text, where, top_hint)
    try:
        return model.model_validate(data), lines
    except ValidationError as e:
        raise validation_error(e, model, where, lines) from None


def _index_lines(node: yaml.Node, loc: tuple, out: dict[tuple, int], where: str) -> None:
    """Map every key path to the 1-based line of its key (list items: of the item)."""
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key == "<<":  # merge key: index the merged mapping's keys at this level
                _index_lines(v, loc, out, where)
                continue
            if key in seen:
                raise InputError(where, f"key {key!r} appears twice", line=k.start_mark.line + 1,
                                 field=_loc_str(loc + (key,)))
            seen.add(key)
            out[loc + (key,)] = k.start_mark.line + 1
            _index_lines(v, loc + (key,), out, where)
            out[loc + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index_lines(v, loc + (i,), out, where)


def _clean_loc(lines: dict[tuple, int], loc: tuple, keep_last: bool) -> tuple:
    """Drop the union/validator tags pydantic inserts into locations (e.g. 'dict[str,any]')."""
    clean: list[Any] = []
    for i, part in enumerate(loc):
        if tuple(clean + [part]) in lines or (keep_last and i == len(loc) - 1):
            clean.append(part)
    return tuple(clean)


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for k in range(len(loc), -1, -1):
        if tuple(loc[:k]) in lines:
            return lines[tuple(loc[:k])]
    return None


def _loc_str(loc: tuple) -> str:
    s = ""
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The fields allowed at ``loc`` (for "unknown field" messages)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            break
        ann = f.annotation
        args = getattr(ann, "__args__", ()) or (ann,)
        nxt = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            break
        model = nxt
    return list(model.model_fields)


__all__ = ["parse_yaml", "read_config_text", "strict_scalars", "validate_yaml", "validation_error"]
