"""Pydantic validation errors in a configuration's own words: dotted keys, plain types, no internals.

:func:`format_validation_error` walks the model along each error's location, so it knows which
sub-model (and which member of a union) the error is in: it drops pydantic's union labels from the
path, names the known fields and the allowed kinds, and suggests the closest spelling. The model
introspection it shares with the generated reference lives in :mod:`prmforge.schemas.config_reference`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

import pydantic

from prmforge.schemas.config_reference import (
    choices_of,
    field_annotation,
    fields_by_key,
    is_model,
    is_union,
    strip_annotation,
    union_tags,
)

_MAX_LISTED = 12
_YAML_FALSE = ("off", "no", "false", "n")
_YAML_TRUE = ("on", "yes", "true", "y")
_NAMED_PATH = re.compile(r"([A-Za-z_][\w-]*(?:\.[\w-]+)*): (.+)", re.DOTALL)
_MISSING: Any = object()

# ---------------------------------------------------------------- walking an error's location


@dataclass
class _Where:
    path: list[str]
    node: Any  # the annotation the location ends at (None: not known)
    parent: type[pydantic.BaseModel] | None  # the model whose key the last segment is
    value: Any  # the input at the location (_MISSING: not known)
    discriminator: str | None = None
    key: bool = False  # the error is about a mapping's key
    # For each plain union on the way: its path, and how well the member taken fits the input
    # (2: its literal fields match, 1: cannot tell, 0: it does not fit).
    unions: list[tuple[str, int]] = field(default_factory=list)


def _fit(member: Any, value: Any) -> bool | None:
    """Whether a union member fits the input: by its literal fields, else by the input's shape."""
    member = strip_annotation(member)[0]
    origin = get_origin(member) or member
    if isinstance(value, dict):
        if not (is_model(member) or origin is dict):
            return False
        if is_model(member):
            for key, info in fields_by_key(member).items():
                allowed = choices_of(info.annotation)
                if allowed is not None and key in value:
                    return value[key] in allowed
        return None
    if isinstance(value, list):
        return origin in (list, tuple, set, frozenset)
    if value is _MISSING:
        return None
    return not (is_model(member) or origin in (dict, list, tuple, set, frozenset))


def _label_member(members: Sequence[Any], label: object) -> Any:
    """The member of a plain union that pydantic labelled ``label`` (``'int'``, ``'list[int]'``, a class)."""
    text = str(label)
    head = text.split("[", 1)[0].lower()
    cores = [strip_annotation(m)[0] for m in members]
    for member, core in zip(members, cores, strict=True):
        if is_model(core) and re.search(rf"\b{re.escape(core.__name__)}\b", text):
            return member
    for member, core in zip(members, cores, strict=True):
        origin = get_origin(core) or core
        name = "literal" if origin is Literal else getattr(origin, "__name__", "").lower()
        if name and (name == head or text.endswith(f" {name}]")):
            return member
    return None


def _descend_union(where: _Where, core: Any, disc: str | None, loc: list[Any]) -> Any:
    """Pick the member of a union the location goes on in; consumes pydantic's tag or label."""
    members = get_args(core)
    if disc is not None:
        tags = dict(union_tags(core, disc))
        if loc and isinstance(loc[0], str) and loc[0] in tags:
            return tags[loc.pop(0)]
        if isinstance(where.value, dict) and str(where.value.get(disc)) in tags:
            return tags[str(where.value.get(disc))]
        return None
    if not loc:
        return None
    chosen = _label_member(members, loc.pop(0))
    fit = _fit(chosen, where.value) if chosen is not None else None
    where.unions.append((".".join(where.path), {True: 2, None: 1, False: 0}[fit]))
    return chosen


def _walk(model: type[pydantic.BaseModel], data: object, location: Sequence[int | str]) -> _Where:
    loc = list(location)
    where = _Where(path=[], node=model, parent=None, value=data)
    while True:
        core, disc, _ = strip_annotation(where.node) if where.node is not None else (None, None, False)
        if core is not None and is_union(core):
            member = _descend_union(where, core, disc, loc)
            if member is None:
                where.node, where.discriminator = core, disc
                if not loc:
                    return where
                core = None
            else:
                where.node = member
                continue
        where.node = core
        if not loc:
            return where
        segment = loc.pop(0)
        if segment == "[key]":
            where.key = True
            continue
        where.path.append(str(segment))
        value = where.value
        if is_model(core):
            where.parent = core
            info = fields_by_key(core).get(str(segment))
            where.node = None if info is None else field_annotation(info)
            where.value = value.get(segment, _MISSING) if isinstance(value, dict) else _MISSING
            continue
        where.parent = None
        origin, args = get_origin(core), get_args(core)
        if origin in (list, set, frozenset, Sequence) and args:
            where.node = args[0]
        elif origin is tuple and args:
            index = segment if isinstance(segment, int) else 0
            where.node = args[0] if args[-1] is Ellipsis else args[min(index, len(args) - 1)]
        elif origin is dict and len(args) == 2:
            where.node = args[1]
        else:
            where.node = None
        if isinstance(value, dict):
            where.value = value.get(segment, _MISSING)
        elif isinstance(value, list) and isinstance(segment, int) and 0 <= segment < len(value):
            where.value = value[segment]
        else:
            where.value = _MISSING


# ---------------------------------------------------------------- plain words


def show(value: object) -> str:
    """An input value as a configuration's reader would name it."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return f"a {type(value).__name__}"


def _num(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _yaml_bool(value: bool, choices: Sequence[object] = ()) -> str:
    spellings = _YAML_TRUE if value else _YAML_FALSE
    text = f"got the YAML boolean {str(value).lower()} (from {'/'.join(spellings[:3])}?)"
    if not choices:
        return f"{text}; quote it: '{spellings[0]}'"
    for choice in choices:
        if isinstance(choice, str) and choice.lower() in spellings:
            return f"{text}; quote it: {choice!r}"
    return text


def _suggest(word: object, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listed(names: Sequence[str]) -> str:
    if len(names) <= _MAX_LISTED:
        return ", ".join(names)
    return ", ".join(names[:_MAX_LISTED]) + f", ... ({len(names) - _MAX_LISTED} more)"


_EXPECTED = {
    "an integer": ("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
    "a number": ("float_type", "float_parsing", "decimal_type", "decimal_parsing"),
    "a finite number": ("finite_number",),
    "true or false": ("bool_type", "bool_parsing"),
    "a string": ("string_type", "string_sub_type"),
    "a path": ("path_type",),
    "a list": ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"),
    "a mapping": ("dict_type", "model_type", "model_attributes_type", "dataclass_type"),
    "null": ("none_required",),
}
_EXPECTED_BY_TYPE = {kind: words for words, kinds in _EXPECTED.items() for kind in kinds}
_STRINGY = ("string_type", "string_sub_type", "path_type")
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _choices_message(allowed: Sequence[object], got: object) -> str:
    shown = ", ".join(repr(a) for a in allowed)
    head = f"must be {shown}" if len(allowed) == 1 else f"must be one of {shown}"
    if isinstance(got, bool):
        return f"{head}; {_yaml_bool(got, allowed)}"
    strings = [a for a in allowed if isinstance(a, str)]
    return f"{head} (got {show(got)})" + (_suggest(got, strings) if isinstance(got, str) else "")


def _parse_expected(text: str) -> list[str]:
    """``"'a', 'b' or 'c'"`` (pydantic's ctx) -> ``['a', 'b', 'c']``."""
    return re.findall(r"'((?:[^'\\]|\\.)*)'", text)


def _tag_problem(kind: str, ctx: dict[str, Any], where: _Where, got: object) -> str:
    disc = where.discriminator or str(ctx.get("discriminator", "'kind'")).strip("'\"")
    tags: list[str] = []
    if where.node is not None and is_union(where.node):
        tags = list(dict.fromkeys(tag for tag, _ in union_tags(where.node, disc)))
    if not tags:
        tags = _parse_expected(str(ctx.get("expected_tags", "")))
    if kind == "union_tag_not_found":
        return f"needs a {disc!r}" + (f" (one of {', '.join(tags)})" if tags else "")
    value = got.get(disc, ctx.get("tag")) if isinstance(got, dict) else ctx.get("tag")
    if isinstance(value, bool):
        return f"unknown {disc}: {_yaml_bool(value, tags)}; allowed: {', '.join(tags)}"
    return f"unknown {disc} {show(value)}; allowed: {', '.join(tags)}" + _suggest(value, tags)


def _message(error: Any, where: _Where) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        if where.parent is None:
            return "is not a known field"
        known = list(fields_by_key(where.parent))
        hint = _suggest(where.path[-1], known)
        return "is not a known field" + (hint or f"; allowed: {_listed(known)}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _tag_problem(kind, ctx, where, got)
    if kind in ("literal_error", "enum"):
        allowed = choices_of(where.node) if where.node is not None else None
        return _choices_message(allowed or _parse_expected(str(ctx.get("expected", ""))), got)
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {_num(ctx.get(key))} (got {show(got)})"
    if kind == "multiple_of":
        return f"must be a multiple of {_num(ctx.get('multiple_of'))} (got {show(got)})"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length" if kind == "too_short" else "max_length")
        items = "item" if bound == 1 else "items"
        word = "at least" if kind == "too_short" else "at most"
        return f"must have {word} {bound} {items} (got {ctx.get('actual_length', len(got))})"
    if kind in ("string_too_short", "string_too_long"):
        bound = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        if kind == "string_too_short" and bound == 1:
            return "must not be empty"
        word = "at least" if kind == "string_too_short" else "at most"
        return f"must be {word} {bound} character{'s' * (bound != 1)} long (got {show(got)})"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')!r} (got {show(got)})"
    if kind in _EXPECTED_BY_TYPE:
        expected = _EXPECTED_BY_TYPE[kind]
        if isinstance(got, bool) and kind in _STRINGY:
            return f"must be {expected}; {_yaml_bool(got)}"
        return f"must be {expected} (got {show(got)})"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ") + f" (got {show(got)})"
    return message


# ---------------------------------------------------------------- the report


def _locate(error: Any, model: type[pydantic.BaseModel], data: object) -> tuple[_Where, str]:
    where = _walk(model, data, error["loc"])
    message = _message(error, where)
    if where.key:
        message = f"key {message}"
    # A model validator may name the key it is about ("inputs.1: overlaps inputs.0"): report it there.
    match = _NAMED_PATH.fullmatch(message) if error["type"] in ("value_error", "assertion_error") else None
    if match and is_model(where.node) and match.group(1).split(".")[0] in fields_by_key(where.node):
        where.path += match.group(1).split(".")
        message = match.group(2)
    return where, message


def _merge(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop repeats; join the type errors of a plain union's members ("must be X or Y (got Z)")."""
    merged: list[tuple[str, str]] = []
    for path, message in lines:
        if (path, message) in merged:
            continue
        this = re.fullmatch(r"must be (.+) \(got (.+)\)", message)
        last = re.fullmatch(r"must be (.+) \(got (.+)\)", merged[-1][1]) if merged else None
        if this and last and merged[-1][0] == path and this.group(2) == last.group(2):
            merged[-1] = (path, f"must be {last.group(1)} or {this.group(1)} (got {this.group(2)})")
            continue
        merged.append((path, message))
    return merged


def format_validation_error(
    err: pydantic.ValidationError, origin: str, data: object, model: type[pydantic.BaseModel]
) -> str:
    """The errors of validating ``data`` as ``model``, one ``"  dotted.path: problem"`` line each.

    ``origin`` (a file name) starts the header. Of the errors of a plain (not discriminated) union's
    members, only those of the members that fit the input best are reported.
    """
    located = [_locate(error, model, data) for error in err.errors(include_url=False)]
    best: dict[str, int] = {}
    for where, _ in located:
        for path, rank in where.unions:
            best[path] = max(rank, best.get(path, 0))
    kept = [(w, m) for w, m in located if all(rank == best[path] for path, rank in w.unions)]
    lines = _merge([(".".join(where.path) or "(config)", message) for where, message in kept])
    header = f"{origin}: {len(lines)} problem(s) in the configuration"
    return "\n".join([header, *(f"  {path}: {message}" for path, message in lines)])
