"""The code-program contract: how a ``code`` problem describes its program, and how lines become source.

A ``code`` problem's ``meta`` carries ``task``, ``language`` (one of
:data:`LANGUAGES`), ``entry_point``, ``reference`` (the reference solution as
lines), ``tests`` and ``prelude`` (C ``#include`` lines that are not part of
the solution). :func:`code_spec_of` reads them back as a :class:`CodeSpec`
and raises :class:`CodeSpecError` when they are missing or malformed.

**Tests.** Python tests are a script of ``assert`` statements. C tests are
*structured checks*, JSON in ``meta["tests"]`` (:data:`C_TESTS_FORMAT`, read by
:func:`parse_c_tests`, written by :func:`c_tests_text`)::

    {"format": "prmforge-c-checks/1", "prototype": "int gcd(int a, int b);",
     "checks": [{"call": "gcd(12, 18)", "returns": "int", "expect": "6"},
                {"call": "reverse(buf)", "buffers": [{"name": "buf", "type": "char", "length": 16,
                  "init": "\\"abcd\\"", "expect": "\\"dcba\\"", "compare": "string"}]}]}

A check runs ``call`` (a C expression, after the optional ``setup``
statements, with each buffer declared as ``type name[length] = init``) in the
sample's process; the trusted driver compares the returned value with
``expect`` (unless ``returns`` is ``void``) and each buffer that has an
``expect`` initializer with it (``compare``: ``all`` elements, or ``string``:
up to the expected NUL). ``returns`` and buffer types are scalar C types
(:data:`C_SCALAR_TYPES`); ``tolerance`` bounds ``|got - expect|`` for
floating types. A free-form C ``int main`` driver is refused (``CodeSpec.c_tests``
is None and ``tests_error`` says why; the compile-test verifier abstains): it
would run inside the sample's process, where its verdict can be forged.

:func:`assemble_program` turns solution lines into the source to run, and
:func:`completed_prefix` is the state a code verifier judges line t by: the
rollout's lines up to t followed by the reference's lines after t (see
:mod:`prmforge.verifiers.compile_test`). The built-in ``code`` suite
(:mod:`prmforge.suites.code`) writes problems in this form; the code
verifiers read them; neither imports the other.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast

from prmforge.schemas.records import Problem

__all__ = [
    "C_SCALAR_TYPES",
    "C_TESTS_FORMAT",
    "LANGUAGES",
    "CBuffer",
    "CCheck",
    "CTests",
    "CodeSpec",
    "CodeSpecError",
    "Language",
    "assemble_program",
    "c_tests_text",
    "code_spec_of",
    "completed_prefix",
    "parse_c_tests",
]

Language = Literal["python", "c"]
LANGUAGES: Final[tuple[Language, ...]] = ("python", "c")
C_TESTS_FORMAT: Final = "prmforge-c-checks/1"
C_SCALAR_TYPES: Final[Mapping[str, tuple[int, str]]] = {
    **dict.fromkeys(("char", "signed char", "int8_t"), (1, "int")),
    **dict.fromkeys(("unsigned char", "uint8_t"), (1, "uint")),
    **dict.fromkeys(("short", "int16_t"), (2, "int")),
    **dict.fromkeys(("unsigned short", "uint16_t"), (2, "uint")),
    **dict.fromkeys(("int", "int32_t"), (4, "int")),
    **dict.fromkeys(("unsigned", "unsigned int", "uint32_t"), (4, "uint")),
    **dict.fromkeys(("long", "long long", "int64_t", "ptrdiff_t"), (8, "int")),
    **dict.fromkeys(("unsigned long", "unsigned long long", "uint64_t", "size_t"), (8, "uint")),
    "bool": (1, "bool"),
    "_Bool": (1, "bool"),
    "float": (4, "float"),
    "double": (8, "float"),
}
"""The types a check may return or compare: name -> (size in bytes on LP64, kind)."""
MAX_CHECKS: Final = 256
MAX_MESSAGE: Final = 4096
"""A check's result (a marker byte, the value and the compared buffers) fits one pipe page."""
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HARNESS_NAMES: Final = frozenset({"main", "_start", "_init", "_fini"})


class CodeSpecError(ValueError):
    """A problem's ``meta`` does not describe a code task."""


@dataclass(frozen=True, slots=True)
class CBuffer:
    """An array declared before a check's call: ``type name[length] = init`` (``{0}`` when empty)."""

    name: str
    type: str
    length: int
    init: str = ""
    expect: str = ""
    compare: Literal["all", "string"] = "all"


@dataclass(frozen=True, slots=True)
class CCheck:
    """One C check: ``call`` returns ``returns``, compared with ``expect``; buffers compared after."""

    call: str
    returns: str = "void"
    expect: str = ""
    tolerance: float | None = None
    buffers: tuple[CBuffer, ...] = ()
    setup: str = ""

    def message_bytes(self) -> int:
        """Bytes this check's result takes on the wire (marker, value, compared buffers)."""
        value = 0 if self.returns == "void" else C_SCALAR_TYPES[self.returns][0]
        return 1 + value + sum(C_SCALAR_TYPES[b.type][0] * b.length for b in self.buffers if b.expect)


@dataclass(frozen=True, slots=True)
class CTests:
    """A C task's tests: the entry point's prototype and the checks."""

    prototype: str
    checks: tuple[CCheck, ...]


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """What a verifier needs from a code problem (read back from ``Problem.meta``)."""

    task: str
    language: Language
    entry_point: str
    reference: tuple[str, ...]
    tests: str
    prelude: str
    c_tests: CTests | None = None
    """C: the structured checks, or None when ``tests`` is not valid (``tests_error`` says why)."""
    tests_error: str = ""


def code_spec_of(problem: Problem) -> CodeSpec:
    """The code task described by ``problem.meta``; :class:`CodeSpecError` when it is missing or malformed.

    C tests that are not valid structured checks do not raise (the lines are still a program a
    language server can read): ``c_tests`` is None and ``tests_error`` names the bad field.
    """
    meta: Mapping[str, Any] = problem.meta
    try:
        language = meta["language"]
        reference = tuple(str(line) for line in meta["reference"])
        spec = CodeSpec(
            task=str(meta.get("task", "")),
            language=cast(Language, language),
            entry_point=str(meta.get("entry_point", "")),
            reference=reference,
            tests=str(meta["tests"]),
            prelude=str(meta.get("prelude", "")),
        )
    except (KeyError, TypeError) as err:
        raise CodeSpecError(f"problem {problem.problem_id} is not a code problem: missing {err}") from None
    if language not in LANGUAGES or not reference:
        raise CodeSpecError(f"problem {problem.problem_id}: bad language {language!r} or empty reference")
    if language != "c":
        return spec
    try:
        entry = spec.entry_point
        if _IDENT.fullmatch(entry) is None or entry in _HARNESS_NAMES or "prmforge" in entry:
            raise CodeSpecError(f"entry_point must be a C identifier the harness does not use, got {entry!r}")
        tests = parse_c_tests(spec.tests)
        if re.search(rf"\b{spec.entry_point}\s*\(", tests.prototype) is None:
            raise CodeSpecError(f"tests.prototype does not declare the entry point {spec.entry_point}")
    except CodeSpecError as err:  # the lines are still a program (the language server reads them)
        return replace(spec, tests_error=f"problem {problem.problem_id}: {err}")
    return replace(spec, c_tests=tests)


def assemble_program(spec: CodeSpec, lines: Sequence[str], *, with_tests: bool) -> str:
    """The source to run: prelude, the solution lines and (``with_tests``) the tests' text after them.

    For C the tests are structured checks run by a separate trusted driver
    (:mod:`prmforge.verifiers.c_driver`), never appended: the sample's
    translation unit is the prelude and the solution lines alone.
    """
    parts = [spec.prelude] if spec.prelude else []
    parts.append("\n".join(lines))
    if with_tests and spec.language != "c":
        parts.append(spec.tests)
    return "\n".join(parts).rstrip("\n") + "\n"


def completed_prefix(steps: Sequence[str], reference: Sequence[str], t: int) -> tuple[str, ...]:
    """Line t's program: ``steps[:t+1] + reference[t+1:]``, or ``steps`` itself for the last line.

    This is the state both code verifiers judge step t by (see
    :mod:`prmforge.verifiers.compile_test`).
    """
    if not 0 <= t < len(steps):
        raise IndexError(f"line {t} outside 0..{len(steps) - 1}")
    if t == len(steps) - 1:
        return tuple(steps)
    return (*steps[: t + 1], *reference[t + 1 :])


# ---- C tests: structured checks as JSON ------------------------------------------


def c_tests_text(tests: CTests) -> str:
    """``tests`` as the JSON text of ``meta["tests"]`` (one check per line; defaults left out)."""
    rows = []
    for check in tests.checks:
        row: dict[str, Any] = {"call": check.call}
        if check.returns != "void":
            row.update(returns=check.returns, expect=check.expect)
        if check.tolerance is not None:
            row["tolerance"] = check.tolerance
        if check.setup:
            row["setup"] = check.setup
        if check.buffers:
            row["buffers"] = [
                {k: v for k, v in (("name", b.name), ("type", b.type), ("length", b.length), ("init", b.init),
                                   ("expect", b.expect), ("compare", b.compare)) if v not in ("", "all")}
                for b in check.buffers
            ]  # fmt: skip
        rows.append(json.dumps(row, ensure_ascii=False))
    head = json.dumps({"format": C_TESTS_FORMAT, "prototype": tests.prototype}, ensure_ascii=False)
    text = head[:-1] + ',\n "checks": [\n  ' + ",\n  ".join(rows) + "\n ]}\n"
    if parse_c_tests(text) != tests:
        raise CodeSpecError("these C tests do not survive their own JSON round trip")
    return text


def parse_c_tests(text: str) -> CTests:
    """The structured C checks in ``text``; :class:`CodeSpecError` naming the bad field otherwise."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise CodeSpecError(
            f"tests: C tests must be a JSON object in the {C_TESTS_FORMAT!r} format (structured checks); "
            "a free-form C test driver (int main ...) is refused because it would run inside the "
            "sample's process, where its verdict can be forged"
        )
    _keys(data, "tests", {"format", "prototype", "checks"}, {"format", "prototype", "checks"})
    if data["format"] != C_TESTS_FORMAT:
        raise CodeSpecError(f"tests.format: expected {C_TESTS_FORMAT!r}, got {data['format']!r}")
    prototype = _fragment(data["prototype"], "tests.prototype", prototype=True)
    checks = data["checks"]
    if not isinstance(checks, list) or not 1 <= len(checks) <= MAX_CHECKS:
        raise CodeSpecError(f"tests.checks: expected a list of 1..{MAX_CHECKS} checks")
    return CTests(prototype, tuple(_check(row, f"tests.checks[{i}]") for i, row in enumerate(checks)))


def _keys(row: object, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise CodeSpecError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in sorted(set(row) - allowed):
        raise CodeSpecError(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required - set(row)):
        raise CodeSpecError(f"{where}.{key}: missing")
    return row


def _check(raw: object, where: str) -> CCheck:
    allowed = {"call", "returns", "expect", "tolerance", "buffers", "setup"}
    row = _keys(raw, where, allowed, {"call"})
    returns = row.get("returns", "void")
    if returns != "void" and returns not in C_SCALAR_TYPES:
        raise CodeSpecError(f"{where}.returns: expected void or one of {', '.join(C_SCALAR_TYPES)}")
    if (returns == "void") == ("expect" in row):
        raise CodeSpecError(f"{where}.expect: required exactly when returns is not void")
    tolerance = row.get("tolerance")
    if tolerance is not None and (
        C_SCALAR_TYPES.get(returns, (0, ""))[1] != "float"
        or isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise CodeSpecError(f"{where}.tolerance: a finite number >= 0, for float or double only")
    buffers = row.get("buffers", [])
    if not isinstance(buffers, list):
        raise CodeSpecError(f"{where}.buffers: expected a list")
    parsed = tuple(_buffer(b, f"{where}.buffers[{k}]") for k, b in enumerate(buffers))
    names = [b.name for b in parsed]
    if len(set(names)) != len(names):
        raise CodeSpecError(f"{where}.buffers: names must be distinct")
    check = CCheck(
        call=_fragment(row["call"], f"{where}.call"),
        returns=returns,
        expect=_fragment(row["expect"], f"{where}.expect") if "expect" in row else "",
        tolerance=None if tolerance is None else float(tolerance),
        buffers=parsed,
        setup=_fragment(row.get("setup", ""), f"{where}.setup", statements=True, required=False),
    )
    if check.message_bytes() > MAX_MESSAGE:
        raise CodeSpecError(f"{where}: the value and compared buffers exceed {MAX_MESSAGE} bytes")
    return check


def _buffer(raw: object, where: str) -> CBuffer:
    row = _keys(
        raw, where, {"name", "type", "length", "init", "expect", "compare"}, {"name", "type", "length"}
    )
    name, type_, length, compare = row["name"], row["type"], row["length"], row.get("compare", "all")
    if not isinstance(name, str) or _IDENT.fullmatch(name) is None or name.startswith("prmforge"):
        raise CodeSpecError(f"{where}.name: expected a C identifier not starting with 'prmforge'")
    if type_ not in C_SCALAR_TYPES or C_SCALAR_TYPES[type_][1] == "bool":
        raise CodeSpecError(f"{where}.type: expected a non-bool scalar type ({', '.join(C_SCALAR_TYPES)})")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_MESSAGE:
        raise CodeSpecError(f"{where}.length: expected an integer in 1..{MAX_MESSAGE}")
    if compare not in ("all", "string") or (compare == "string" and C_SCALAR_TYPES[type_][0] != 1):
        raise CodeSpecError(f"{where}.compare: 'all', or 'string' for a char buffer")
    init = _fragment(row.get("init", ""), f"{where}.init", required=False, initializer=True)
    expect = _fragment(row.get("expect", ""), f"{where}.expect", required=False, initializer=True)
    return CBuffer(name, type_, length, init, expect, cast(Literal["all", "string"], compare))


def _fragment(
    value: object,
    where: str,
    *,
    statements: bool = False,
    required: bool = True,
    initializer: bool = False,
    prototype: bool = False,
) -> str:
    """A C fragment the generators paste into their code: brackets balanced, literals closed, no
    comments, preprocessor lines or backslashes outside literals; an expression has no ``;`` (an
    initializer no top-level ``,``; a prototype ends in its only ``;`` and has no braces)."""
    if not isinstance(value, str):
        raise CodeSpecError(f"{where}: expected a string of C, got {type(value).__name__}")
    if required and not value.strip():
        raise CodeSpecError(f"{where}: must not be empty")
    if len(value) > MAX_MESSAGE or "\0" in value or "prmforge" in value:
        raise CodeSpecError(f"{where}: at most {MAX_MESSAGE} characters, no NUL, no 'prmforge' names")
    body = value.strip()
    if prototype:
        if not body.endswith(";") or "{" in body:
            raise CodeSpecError(f"{where}: expected one declaration ending in ';', without a body")
        body = body[:-1]
    closing = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    quote = ""
    i = 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\" and i + 1 < len(body) and body[i + 1] != "\n":
                i += 1
            elif ch == quote:
                quote = ""
            elif ch == "\n":
                raise CodeSpecError(f"{where}: unterminated {quote} literal")
        elif ch in "\"'":
            quote = ch
        elif body.startswith(("/*", "//"), i) or ch in "#\\":
            raise CodeSpecError(f"{where}: no comments, preprocessor lines or backslashes outside literals")
        elif ch in closing:
            stack.append(closing[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                raise CodeSpecError(f"{where}: unbalanced {ch!r}")
        elif not stack and not statements and (ch in ";\n" or (initializer and ch == ",")):
            raise CodeSpecError(f"{where}: {ch!r} outside brackets (one expression or initializer only)")
        i += 1
    if quote or stack:
        raise CodeSpecError(f"{where}: unterminated literal or unbalanced brackets")
    return value.strip()
