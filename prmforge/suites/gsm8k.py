"""GSM8K replayed from its calculator annotations.

A GSM8K answer is a few lines of prose in which calculations are annotated
``<<expr=value>>``, then a line ``#### N``. Each line that carries at least one
annotation becomes a plan step (lines without one are kept as text of the next
step, or of the last step when none follows); each annotation becomes a calc.
An operand literal equal to the result of an earlier annotation becomes a
reference to it (the most recent such result), so an error in a replayed step
carries into the steps that use its result.

Rows that cannot be replayed exactly raise :class:`RowError`: the replay checks
every annotation with the exact evaluator and the last computed value against
the gold answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import Problem
from prmforge.schemas.validation import decode_json_line, string_field
from prmforge.suites.plan import (
    Calc,
    ExprError,
    Plan,
    PlanError,
    PlanStep,
    evaluate,
    format_value,
    join_tokens,
    parse_annotations,
    parse_value,
    tokenize,
)

__all__ = ["iter_gsm8k_lines", "load_gsm8k", "parse_gsm8k_row"]

_GOLD_RE = re.compile(r"^####(.*)$", re.MULTILINE)
_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_NUMBER_RE = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_ECHO_TAIL_RE = re.compile(r"\s*=\s*(\$?)\s*$")
_ECHO_CHARS = frozenset("0123456789.+-*/()xX× ")


def iter_gsm8k_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw bytes)`` of each non-blank line (0-based numbers; line ends stripped)."""
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle):
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw


def _echo_start(before: str, expr: str) -> int | None:
    """Where ``before`` starts to repeat ``expr`` as ``expr =`` (``x`` for ``*``), or None."""
    tail = _ECHO_TAIL_RE.search(before)
    if tail is None:
        return None
    end = tail.start()
    start = end
    while start > 0 and before[start - 1] in _ECHO_CHARS:
        start -= 1
    target = expr.replace(" ", "")
    for begin in range(start, end):
        if before[begin] == " " or (begin > 0 and (before[begin - 1].isdigit() or before[begin - 1] == ".")):
            continue
        shown = before[begin:end].replace(" ", "").translate(str.maketrans("xX×", "***"))
        if shown == target:
            return begin
    return None


def _line_step(
    line: str, line_no: int, results: list[Fraction], last: dict[Fraction, int]
) -> tuple[list[str], list[Calc]]:
    """Text parts and calcs of one answer line; appends each calc's value to ``results``.

    ``last`` maps each value to the index of the latest calc that gave it, so a literal finds the
    result it repeats in constant time (the replay is linear in the answer's length).
    """
    texts: list[str] = []
    calcs: list[Calc] = []
    pos = 0
    for match in _ANNOTATION_RE.finditer(line):
        where = f"annotation <<{match.group(1)}>> on answer line {line_no}"
        (expr, stated), *_ = parse_annotations(match.group(0))
        if not stated:
            raise RowError("answer", f"{where} has no '=value'")
        try:
            tokens = tokenize(expr)
            value = evaluate(expr)
            claimed = parse_value(stated)
        except ExprError as err:
            raise RowError("answer", f"{where} cannot be evaluated: {err}") from None
        if value != claimed:
            raise RowError("answer", f"{where}: {expr} is {format_value(value)}, not {stated}")
        for k, token in enumerate(tokens):
            if token[0].isdigit() or token[0] == ".":
                earlier = last.get(Fraction(token))
                if earlier is not None:
                    tokens[k] = f"{{c{earlier}}}"
        before = line[pos : match.start()]
        echo = _echo_start(before, expr)
        if echo is None:
            texts.append(before)
            calcs.append(Calc(join_tokens(tokens), echo=False))
        else:
            lead = _ECHO_TAIL_RE.search(before)
            texts.append(before[:echo])
            calcs.append(Calc(join_tokens(tokens), echo=True, lead=lead.group(1) if lead else ""))
        pos = match.end()
        shown = _NUMBER_RE.match(line, pos)
        if shown is not None and Fraction(shown.group(0).replace(",", "")) == value:
            pos = shown.end()
        last[value] = len(results)
        results.append(value)
    texts.append(line[pos:])
    return texts, calcs


def _gold(answer: str) -> tuple[str, str]:
    """The solution text before ``####`` and the gold answer after it (commas stripped)."""
    matches = list(_GOLD_RE.finditer(answer))
    if not matches:
        raise RowError("answer", "no final '#### N' line with the gold answer")
    gold = matches[-1].group(1).strip().replace(",", "")
    if not gold:
        raise RowError("answer", "the '####' line states no gold answer")
    return answer[: matches[-1].start()], gold


def _plan(solution: str) -> tuple[Plan, Fraction]:
    results: list[Fraction] = []
    seen: dict[Fraction, int] = {}
    steps: list[PlanStep] = []
    pending: list[str] = []
    lines = [line.strip() for line in solution.splitlines() if line.strip()]
    for line_no, line in enumerate(lines, start=1):
        if "<<" not in line:
            pending.append(line)
            continue
        texts, calcs = _line_step(line, line_no, results, seen)
        if not calcs:
            pending.append(line)
            continue
        if pending:
            texts[0] = "\n".join([*pending, texts[0]])
            pending = []
        steps.append(PlanStep(tuple(texts), tuple(calcs)))
    if not steps:
        raise RowError("answer", "no calculator annotations <<expr=value>> to replay")
    if pending:
        last = steps[-1]
        steps[-1] = PlanStep((*last.text[:-1], "\n".join([last.text[-1], *pending])), last.calcs)
    try:
        plan = Plan(tuple(steps))
    except PlanError as err:
        raise RowError("answer", f"cannot replay the solution: {err}") from None
    return plan, results[-1]


def parse_gsm8k_row(
    raw: bytes,
    *,
    source: str,
    index: int,
    max_question_bytes: int = 65536,
    max_answer_bytes: int | None = None,
    max_steps: int | None = None,
) -> Problem:
    """Parse one GSM8K JSONL line into a problem with its replay plan in ``meta["plan"]``.

    Raises :class:`RowError` naming the field (``"<row>"``, ``"question"`` or
    ``"answer"``) and saying what is wrong with it.
    """
    row = decode_json_line(raw)
    question = string_field(row, "question")
    answer = string_field(row, "answer")
    size = len(question.encode("utf-8"))
    if size > max_question_bytes:
        raise RowError("question", f"question is {size} bytes, above the limit of {max_question_bytes} bytes")
    if not question.strip():
        raise RowError("question", "question is empty")
    if max_steps is not None:
        lines = sum(1 for line in answer.splitlines() if "<<" in line)
        if lines > max_steps:
            raise RowError("answer", f"{lines} calculator steps exceed limits.max_steps ({max_steps})")
    answer_size = len(answer.encode("utf-8"))
    if max_answer_bytes is not None and answer_size > max_answer_bytes:
        raise RowError(
            "answer", f"answer is {answer_size} bytes, above limits.max_answer_bytes ({max_answer_bytes})"
        )
    solution, gold = _gold(answer)
    try:
        gold_value = parse_value(gold)
    except ExprError:
        raise RowError("answer", f"gold answer {gold!r} after '####' is not a number") from None
    plan, last = _plan(solution)
    if last != gold_value:
        raise RowError(
            "answer", f"last computed value {format_value(last)} differs from the gold answer {gold}"
        )
    return Problem(
        problem_id=f"gsm8k-{index}",
        domain="math",
        question=question,
        gold=gold,
        source=source,
        meta={"plan": plan.to_dict(), "line": index},
    )


def load_gsm8k(
    path: str | Path, *, source: str = "gsm8k", max_question_bytes: int = 65536
) -> tuple[list[Problem], list[tuple[int, RowError]]]:
    """Every replayable problem of a GSM8K file, and ``(line number, error)`` for each other row."""
    problems: list[Problem] = []
    rejected: list[tuple[int, RowError]] = []
    for number, raw in iter_gsm8k_lines(path):
        try:
            problems.append(
                parse_gsm8k_row(raw, source=source, index=number, max_question_bytes=max_question_bytes)
            )
        except RowError as err:
            rejected.append((number, err))
    return problems, rejected
