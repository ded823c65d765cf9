"""A Markdown reference of a pydantic model tree, and the model introspection it shares with
:mod:`prmforge.schemas.config_errors`.

:func:`render_reference` lists every key (dotted, through nested models, lists and mappings of
models, and each member of a discriminated union under its ``kind``) with its type in plain words,
its real default (taken from the model) and its description. :func:`main` is the command line of
``scripts/gen_config_reference.py``: print it, or check (``--check``) or rewrite (``--write``) the
block between the markers in a README.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import importlib
import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args, get_origin

import annotated_types
import pydantic
import yaml
from pydantic.fields import FieldInfo

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
_HEADER = "| key | type | default | description |\n| --- | --- | --- | --- |"

# ---------------------------------------------------------------- model introspection


def strip_annotation(annotation: Any) -> tuple[Any, str | None, bool]:
    """``(core, discriminator, nullable)``: ``Annotated`` and ``None`` removed from ``annotation``.

    ``core`` is one type, or a ``Union`` of the remaining members when there are several.
    """
    discriminator: str | None = None
    nullable = False
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *metadata = get_args(annotation)
            for meta in metadata:
                found = getattr(meta, "discriminator", None)
                if isinstance(found, str):
                    discriminator = found
            continue
        if is_union(annotation):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) < len(get_args(annotation)):
                nullable = True
            if len(members) == 1:
                annotation = members[0]
                continue
            annotation = Union[tuple(members)]  # noqa: UP007 (built from a runtime tuple)
        return annotation, discriminator, nullable


def is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def is_model(annotation: Any) -> TypeGuard[type[pydantic.BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def field_annotation(info: FieldInfo) -> Any:
    """A field's annotation, with the field's own discriminator (``Field(discriminator=...)``) kept."""
    if isinstance(info.discriminator, str):
        return Annotated[info.annotation, pydantic.Discriminator(info.discriminator)]
    return info.annotation


def fields_by_key(model: type[pydantic.BaseModel]) -> dict[str, FieldInfo]:
    """The model's fields under the key a configuration spells them with (the alias, if any)."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def choices_of(annotation: Any) -> tuple[object, ...] | None:
    """The allowed values of a ``Literal`` or an ``Enum`` (``None`` for anything else)."""
    core, _, _ = strip_annotation(annotation)
    if get_origin(core) is Literal:
        return get_args(core)
    if isinstance(core, type) and issubclass(core, enum.Enum):
        return tuple(member.value for member in core)
    return None


def tags_of(member: Any, discriminator: str) -> tuple[str, ...]:
    """The discriminator values that select ``member`` of a discriminated union."""
    if not is_model(member):
        return ()
    info = fields_by_key(member).get(discriminator) or member.model_fields.get(discriminator)
    values = choices_of(info.annotation) if info is not None else None
    return tuple(str(v) for v in values or ())


def union_tags(core: Any, discriminator: str) -> list[tuple[str, Any]]:
    """``(tag, member)`` for each member of the union ``core`` and each tag that selects it."""
    return [(tag, m) for m in get_args(core) for tag in tags_of(strip_annotation(m)[0], discriminator)]


# ---------------------------------------------------------------- types and values in plain words

_NAMES: dict[Any, tuple[str, str]] = {
    int: ("integer", "integers"),
    float: ("number", "numbers"),
    str: ("string", "strings"),
    bool: ("boolean", "booleans"),
    Path: ("path", "paths"),
    type(None): ("null", "nulls"),
    Any: ("any value", "values"),
}


def _num(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _flat(metadata: Sequence[Any]) -> list[Any]:
    """Constraint metadata, with that of nested ``FieldInfo`` objects (``Annotated[int, Field(ge=1)]``)."""
    return [m for meta in metadata for m in (_flat(meta.metadata) if isinstance(meta, FieldInfo) else [meta])]


def _constraints(metadata: Sequence[Any], text: bool) -> tuple[str, list[str]]:
    """``(bounds, others)``: ``"in [0, 1]"`` or ``">= 1"``, and ``["non-empty", "at most 3 items"]``."""
    bounds: dict[str, object] = {}
    words: list[str] = []
    for meta in _flat(metadata):
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(meta, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(meta, name)
        if isinstance(meta, annotated_types.MultipleOf):
            words.append(f"a multiple of {_num(meta.multiple_of)}")
        if isinstance(meta, annotated_types.MinLen) and meta.min_length > 0:
            n = meta.min_length
            words.append("non-empty" if text and n == 1 else f"at least {n} {_unit(n, text)}")
        if isinstance(meta, annotated_types.MaxLen):
            words.append(f"at most {meta.max_length} {_unit(meta.max_length, text)}")
    low = next(((k, bounds[k]) for k in ("ge", "gt") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("le", "lt") if k in bounds), None)
    if low and high:
        left, right = "[" if low[0] == "ge" else "(", "]" if high[0] == "le" else ")"
        return f"in {left}{_num(low[1])}, {_num(high[1])}{right}", words
    if low or high:
        key, bound = low or high or ("", "")
        return f"{_SIGNS[key]} {_num(bound)}", words
    return "", words


_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _unit(n: int, text: bool) -> str:
    return ("character" if text else "item") + ("s" if n != 1 else "")


def describe(annotation: Any, metadata: Sequence[Any] = (), plural: bool = False) -> str:
    """A type in plain words: ``"integer >= 1"``, ``"list of strings, non-empty"``, ``"`a` or `b`"``."""
    meta = list(metadata)
    outer = annotation
    while get_origin(outer) is Annotated:
        outer, *more = get_args(outer)
        meta += more
    core, disc, nullable = strip_annotation(annotation)
    origin, args = get_origin(core), get_args(core)
    allowed = choices_of(core)
    s = "s" if plural else ""
    if allowed is not None:
        shown = [f"`{_value(v)}`" for v in allowed]
        words = " or ".join(shown) if len(shown) <= 2 else "one of " + ", ".join(shown)
    elif disc is not None and is_union(core):
        kinds = ", ".join(dict.fromkeys(tag for tag, _ in union_tags(core, disc)))
        words = f"mapping{s} with a `{disc}` ({kinds})"
    elif is_union(core):
        words = " or ".join(describe(m, plural=plural) for m in args)
    elif is_model(core):
        words = f"mapping{s}"
    elif origin in (list, tuple, set, frozenset, Sequence):
        words = f"list{s} of {describe(args[0] if args else Any, plural=True)}"
    elif origin is dict:
        key, value = args or (Any, Any)
        words = f"mapping{s} of {describe(key)} to {describe(value)}"
    else:
        singular, plural_name = _NAMES.get(core) or (getattr(core, "__name__", str(core)),) * 2
        words = plural_name if plural else singular
    bounds, others = _constraints(meta, core is str or core is Path)
    words = " ".join(filter(None, [words, bounds]))
    if not nullable:
        return ", ".join([words, *others])
    return f"{words} ({', '.join(others)}) or null" if others else f"{words} or null"


def _value(value: object) -> str:
    """A value as it would be written in YAML (flow style); a model shows what differs from its defaults."""
    if isinstance(value, pydantic.BaseModel):
        shown: list[str] = []
        for name, info in type(value).model_fields.items():
            mine = getattr(value, name)
            tag = len(choices_of(info.annotation) or ()) == 1  # a union member's `kind`: always shown
            if tag or info.is_required() or mine != _default(info):
                shown.append(f"{info.alias or name}: {_value(mine)}")
        return "{" + ", ".join(shown) + "}"
    if isinstance(value, enum.Enum):
        return _value(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | Path):
        text = str(value)
        plain = text and text.strip() == text and not any(c in text for c in ":#{}[],'\"&*!|>%@`\\")
        if plain and _plain_scalar(text):
            return text
        return f"'{text}'" if text.isprintable() and "'" not in text else json.dumps(text)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _plain_scalar(text: str) -> bool:
    """Whether YAML reads ``text`` unquoted back as this same string (not ``off``, ``1``, ``null``...)."""
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def _default(info: FieldInfo) -> Any:
    if getattr(info, "default_factory_takes_data", False):
        return None
    return info.get_default(call_default_factory=True)


# ---------------------------------------------------------------- the reference


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _docstring(model: type[pydantic.BaseModel]) -> str:
    doc = model.__dict__.get("__doc__")
    return " ".join(doc.strip().split("\n\n")[0].split()) if isinstance(doc, str) and doc.strip() else ""


class _Reference:
    def __init__(self) -> None:
        self.sections: list[tuple[str, str, list[str]]] = []  # (title, docstring, rows)

    def model(
        self,
        model: type[pydantic.BaseModel],
        prefix: str,
        rows: list[str],
        outer: pydantic.BaseModel | None = None,
    ) -> None:
        """Rows for ``model``'s keys. ``outer``: the default of the field that holds the model, whose
        values (where they differ from the model's own defaults) apply when that field is omitted."""
        for name, info in model.model_fields.items():
            key = info.alias or name
            dotted = f"{prefix}{key}"
            annotation = field_annotation(info)
            value: Any = None
            if info.is_required():
                default = "required"
            elif getattr(info, "default_factory_takes_data", False):
                default = "computed"
            else:
                value = _default(info)
                default = f"`{_value(value)}`"
            if outer is not None and (info.is_required() or getattr(outer, name) != value):
                default += f"; `{_value(getattr(outer, name))}` when `{prefix[:-1]}` is omitted"
            rows.append(
                f"| `{dotted}` | {_cell(describe(annotation, info.metadata))} | {_cell(default)} "
                f"| {_cell(info.description or '')} |"
            )
            self.nested(annotation, dotted, rows, value if isinstance(value, pydantic.BaseModel) else None)

    def nested(
        self, annotation: Any, dotted: str, rows: list[str], outer: pydantic.BaseModel | None = None
    ) -> None:
        """Rows (or sections) for what lies inside a field: its sub-model's keys, its union members."""
        core, disc, _ = strip_annotation(annotation)
        origin, args = get_origin(core), get_args(core)
        if is_model(core):
            self.model(core, f"{dotted}.", rows, outer if type(outer) is core else None)
        elif origin in (list, tuple, set, frozenset, Sequence) and args:
            self.nested(args[0], f"{dotted}[]", rows)
        elif origin is dict and len(args) == 2:
            self.nested(args[1], f"{dotted}.*", rows)
        elif is_union(core):
            members = [m for m in args if is_model(strip_annotation(m)[0])]
            for number, member in enumerate(members, start=1):
                model = strip_annotation(member)[0]
                tags = tags_of(model, disc) if disc is not None else ()
                title = f"`{dotted}` with " + (
                    " or ".join(f"`{disc}: {t}`" for t in tags) if tags else f"form {number}"
                )
                section: list[str] = []
                self.sections.append((title, _docstring(model), section))
                self.model(model, f"{dotted}.", section)


def render_reference(model: type[pydantic.BaseModel]) -> str:
    """The Markdown reference of ``model``: one table of its keys, then one per union member."""
    reference = _Reference()
    rows: list[str] = []
    reference.model(model, "", rows)
    parts = [_HEADER + "\n" + "\n".join(rows)]
    for title, doc, section in reference.sections:
        parts.append(
            f"### {title}" + (f"\n\n{doc}" if doc else "") + "\n\n" + _HEADER + "\n" + "\n".join(section)
        )
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- README block and command line


def replace_block(text: str, reference: str) -> str:
    """``text`` with what lies between the markers replaced by ``reference``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} block")
    return text[: start + len(START)] + "\n" + reference + text[end:]


def load_model(spec: str) -> type[pydantic.BaseModel]:
    """``"package.module:Model"`` -> the model class."""
    module_name, _, name = spec.partition(":")
    model = getattr(importlib.import_module(module_name), name, None) if name else None
    if not is_model(model):
        raise ValueError(f"{spec!r} is not MODULE:MODEL naming a pydantic model")
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gen_config_reference.py", description="Markdown reference of a pydantic configuration model."
    )
    parser.add_argument("model", help="MODULE:MODEL, e.g. prmforge.pipelines.config:BuildConfig")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="README", type=Path, help="exit 1 with a diff if the block is stale")
    mode.add_argument("--write", metavar="README", type=Path, help="rewrite the block in place")
    args = parser.parse_args(argv)
    try:
        reference = render_reference(load_model(args.model))
    except (ImportError, ValueError) as err:
        print(f"gen_config_reference.py: {err}", file=sys.stderr)
        return 2
    readme: Path | None = args.check or args.write
    if readme is None:
        sys.stdout.write(reference)
        return 0
    try:
        text = readme.read_text(encoding="utf-8")
        fresh = replace_block(text, reference)
    except (OSError, ValueError) as err:
        print(f"{readme}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
        return 2
    if args.write:
        if fresh != text:
            readme.write_text(fresh, encoding="utf-8")
        return 0
    if fresh == text:
        return 0
    diff = difflib.unified_diff(
        text.splitlines(keepends=True), fresh.splitlines(keepends=True), f"{readme}", f"{readme} (generated)"
    )
    sys.stdout.writelines(diff)
    print(
        f"{readme}: the configuration reference is stale; run "
        f"scripts/gen_config_reference.py {args.model} --write {readme}",
        file=sys.stderr,
    )
    return 1
