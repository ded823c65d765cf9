"""The code-program contract: how a ``code`` problem describes its program, and how lines become source.

A ``code`` problem's ``meta`` carries ``task``, ``language`` (one of
:data:`LANGUAGES`), ``entry_point``, ``reference`` (the reference solution as
lines), ``tests`` and ``prelude`` (C ``#include`` lines that are not part of
the solution). :func:`code_spec_of` reads them back as a :class:`CodeSpec`
and raises :class:`CodeSpecError` when they are missing or malformed.

:func:`assemble_program` turns solution lines into the source to run, and
:func:`completed_prefix` is the state a code verifier judges line t by: the
rollout's lines up to t followed by the reference's lines after t (see
:mod:`prmforge.verifiers.compile_test`). The built-in ``code`` suite
(:mod:`prmforge.suites.code`) writes problems in this form; the code
verifiers read them; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from prmforge.schemas.records import Problem

__all__ = [
    "LANGUAGES",
    "CodeSpec",
    "CodeSpecError",
    "Language",
    "assemble_program",
    "code_spec_of",
    "completed_prefix",
]

Language = Literal["python", "c"]
LANGUAGES: Final[tuple[Language, ...]] = ("python", "c")


class CodeSpecError(ValueError):
    """A problem's ``meta`` does not describe a code task."""


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """What a verifier needs from a code problem (read back from ``Problem.meta``)."""

    task: str
    language: Language
    entry_point: str
    reference: tuple[str, ...]
    tests: str
    prelude: str


def code_spec_of(problem: Problem) -> CodeSpec:
    """The code task described by ``problem.meta``; :class:`CodeSpecError` when it is missing or malformed."""
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
    return spec


def assemble_program(spec: CodeSpec, lines: Sequence[str], *, with_tests: bool) -> str:
    """The source to run: prelude, the solution lines and (C, ``with_tests``) the test driver."""
    parts = [spec.prelude] if spec.prelude else []
    parts.append("\n".join(lines))
    if with_tests:
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
