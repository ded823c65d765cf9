"""The build's inputs as readers: each plans its rows into shard ranges, reads one range, parses a row.

Built-in suites generate problem ``i`` from ``(seed, i)`` alone, so a range is
generated without the rest; the GSM8K suite and users' files are read by
:mod:`prmforge.inputs` (JSONL seeks to the range's first byte, Parquet reads
only its row groups). Planning keeps ranges, never rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prmforge.inputs import ProblemReader, RolloutReader, RowRange, open_problems, open_rollouts
from prmforge.inputs.paths import check_input_path
from prmforge.inputs.rows import JsonlSource, RawRow, group_ranges
from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.stages.load import IMPORTED, SourceRow
from prmforge.schemas.config import ArithSuite, CodeSuite, Gsm8kSuite, LogicSuite
from prmforge.schemas.inputs import ProblemsInput, RolloutsInput
from prmforge.schemas.records import Problem
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.code import generate_code_problems
from prmforge.suites.gsm8k import parse_gsm8k_row
from prmforge.suites.logic import generate_logic_problems

GSM8K_ENV = "PRMFORGE_GSM8K"


def default_gsm8k_path() -> Path:
    """``$PRMFORGE_GSM8K``, else ``shared/data/gsm8k_train.jsonl`` beside the project's checkout."""
    if os.environ.get(GSM8K_ENV):
        return Path(os.environ[GSM8K_ENV])
    project = Path(__file__).resolve().parents[2]
    return (project.parent / "shared" / "data" / "gsm8k_train.jsonl").resolve()


class InputReader(Protocol):
    position: int

    def plan(self, shard_size: int) -> list[RowRange]: ...

    def read(self, rng: RowRange) -> Iterator[SourceRow]: ...

    def parse(self, row: SourceRow) -> Problem: ...

    def digests(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class _Limits:
    question: int
    steps: int
    answer: int


class GeneratedSuite:
    """arith, logic and code: problem ``i`` depends only on the seed and ``i``."""

    def __init__(self, spec: ArithSuite | LogicSuite | CodeSuite, position: int, build_seed: int) -> None:
        self.spec = spec
        self.position = position
        self.seed = build_seed + spec.seed
        stop = spec.count if spec.limit is None else min(spec.count, spec.offset + spec.limit)
        self.start, self.stop = min(spec.offset, stop), stop

    def plan(self, shard_size: int) -> list[RowRange]:
        return [
            RowRange(i, min(i + shard_size, self.stop), None)
            for i in range(self.start, self.stop, shard_size)
        ]

    def _generate(self, start: int, count: int) -> list[Problem]:
        s = self.spec
        if isinstance(s, ArithSuite):
            return generate_arith_problems(count, self.seed, s.min_steps, s.max_steps, start=start)
        if isinstance(s, LogicSuite):
            return generate_logic_problems(
                count, self.seed, s.min_steps, s.max_steps, s.first_order_share, start=start
            )
        return generate_code_problems(count, self.seed, s.languages, start=start)

    def read(self, rng: RowRange) -> Iterator[SourceRow]:
        problems = self._generate(rng.start, rng.stop - rng.start)
        for index, problem in enumerate(problems, start=rng.start):
            yield SourceRow(self.position, self.spec.kind, index, problem)

    def parse(self, row: SourceRow) -> Problem:
        if not isinstance(row.payload, Problem):
            raise TypeError("a generated suite's rows are problems")
        return row.payload

    def digests(self) -> dict[str, str]:
        return {}


def _as_source_rows(position: int, rows: Iterator[RawRow]) -> Iterator[SourceRow]:
    for raw in rows:
        yield SourceRow(position, raw.source, raw.index, raw.payload)


def _raw(row: SourceRow) -> RawRow:
    if not isinstance(row.payload, bytes):
        raise TypeError("a file input's rows are bytes")
    return RawRow(row.source, row.index, row.payload)


class Gsm8kFile:
    """The GSM8K replay suite: problem ids ``gsm8k-<line>``, with the calculator plan in ``meta``."""

    def __init__(self, spec: Gsm8kSuite, position: int, limits: _Limits) -> None:
        self.position = position
        path = spec.path if spec.path is not None else default_gsm8k_path()
        self.path = check_input_path(path, position, "file")
        self.source = f"gsm8k:{self.path.name}"
        self._rows = JsonlSource(self.path, self.source, spec.offset, spec.limit)
        self._limits = limits

    def plan(self, shard_size: int) -> list[RowRange]:
        return self._rows.plan(shard_size)

    def read(self, rng: RowRange) -> Iterator[SourceRow]:
        return _as_source_rows(self.position, self._rows.read(rng))

    def parse(self, row: SourceRow) -> Problem:
        raw = _raw(row)
        lim = self._limits
        return parse_gsm8k_row(
            raw.payload,
            source=raw.source,
            index=raw.index,
            max_question_bytes=lim.question,
            max_answer_bytes=lim.answer,
            max_steps=lim.steps,
        )

    def digests(self) -> dict[str, str]:
        return self._rows.digests()


class _FileInput:
    """A user file read by :mod:`prmforge.inputs`: planning, reading and digests are the reader's."""

    def __init__(self, reader: ProblemReader | RolloutReader, position: int, limits: _Limits) -> None:
        self.position = position
        self._reader = reader
        self._limits = limits

    def plan(self, shard_size: int) -> list[RowRange]:
        return self._reader.plan(shard_size)

    def read(self, rng: RowRange) -> Iterator[SourceRow]:
        return _as_source_rows(self.position, self._reader.read(rng))

    def digests(self) -> dict[str, str]:
        return self._reader.digests()


class ProblemsFile(_FileInput):
    def __init__(self, spec: ProblemsInput, position: int, limits: _Limits) -> None:
        self._problems = open_problems(spec, position)
        super().__init__(self._problems, position, limits)

    def parse(self, row: SourceRow) -> Problem:
        lim = self._limits
        return self._problems.parse(_raw(row), lim.question, lim.answer, lim.steps)


class RolloutsFile(_FileInput):
    """Imported rollouts: each row becomes a problem carrying its rollout (``meta["imported_rollout"]``);
    the generate stage passes it through instead of sampling."""

    def __init__(self, spec: RolloutsInput, position: int, limits: _Limits) -> None:
        self._rollouts = open_rollouts(spec, position)
        super().__init__(self._rollouts, position, limits)

    def parse(self, row: SourceRow) -> Problem:
        lim = self._limits
        got = self._rollouts.parse(_raw(row), lim.question, lim.steps, lim.answer)
        human = got.human
        imported: dict[str, Any] = {
            "key": got.rollout_key,
            "steps": list(got.steps),
            "text": got.text,
            "final_answer": got.final_answer,
            "outcome": got.outcome,
            "generator": got.generator,
            "human_first_error": None if human is None else human.first_error,
            "human_step_correct": None if human is None else list(human.step_correct),
        }
        problem = got.problem
        return Problem(
            problem_id=problem.problem_id,
            domain=problem.domain,
            question=problem.question,
            gold=problem.gold,
            source=problem.source,
            meta={**problem.meta, IMPORTED: imported},
        )


def open_inputs(config: BuildConfig) -> list[InputReader]:
    """A reader per input (ConfigError naming ``inputs.<i>.path`` when a file is not what it should be)."""
    lim = config.limits
    limits = _Limits(lim.max_question_bytes, lim.max_steps, lim.max_answer_bytes)
    readers: list[InputReader] = []
    for position, spec in enumerate(config.inputs):
        if isinstance(spec, Gsm8kSuite):
            readers.append(Gsm8kFile(spec, position, limits))
        elif isinstance(spec, ProblemsInput):
            readers.append(ProblemsFile(spec, position, limits))
        elif isinstance(spec, RolloutsInput):
            readers.append(RolloutsFile(spec, position, limits))
        else:
            readers.append(GeneratedSuite(spec, position, config.seed))
    return readers


def parsers_of(readers: list[InputReader]) -> dict[int, Callable[[SourceRow], Problem]]:
    return {r.position: r.parse for r in readers}


def input_digests(readers: list[InputReader]) -> dict[str, str]:
    """The sha256 of every input file, keyed by path: a resumed build refuses changed inputs."""
    out: dict[str, str] = {}
    for reader in readers:
        out.update(reader.digests())
    return out


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One shard: a range of one input's rows. Shards never straddle inputs."""

    index: int
    position: int
    rows: RowRange


def plan_shards(readers: list[InputReader], shard_size: int) -> list[ShardSpec]:
    shards: list[ShardSpec] = []
    for reader in readers:
        for rng in reader.plan(shard_size):
            shards.append(ShardSpec(len(shards), reader.position, rng))
    return shards


__all__ = ["ShardSpec", "group_ranges", "open_inputs", "plan_shards"]
