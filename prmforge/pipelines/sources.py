"""Input rows of a build, enumerated from its suites in a fixed order."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from prmforge.pipelines.stages import SourceRow
from prmforge.schemas.config import ArithSuite, BuildConfig, Gsm8kSuite, LogicSuite
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Problem
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.code import generate_code_problems
from prmforge.suites.gsm8k import iter_gsm8k_lines, parse_gsm8k_row
from prmforge.suites.logic import generate_logic_problems

GSM8K_ENV = "PRMFORGE_GSM8K"


def default_gsm8k_path() -> Path:
    """``$PRMFORGE_GSM8K``, else ``shared/data/gsm8k_train.jsonl`` beside the project's checkout."""
    if os.environ.get(GSM8K_ENV):
        return Path(os.environ[GSM8K_ENV])
    project = Path(__file__).resolve().parents[2]
    return (project.parent / "shared" / "data" / "gsm8k_train.jsonl").resolve()


def gsm8k_path(suite: Gsm8kSuite, position: int) -> Path:
    path = suite.path if suite.path is not None else default_gsm8k_path()
    if not path.is_file():
        raise ConfigError(f"suites.{position}.path: GSM8K file {path} not found")
    return path


def input_digests(config: BuildConfig) -> dict[str, str]:
    """The sha256 of every input file, keyed by path: a resumed build refuses changed inputs."""
    digests = {}
    for position, suite in enumerate(config.suites):
        if isinstance(suite, Gsm8kSuite):
            path = gsm8k_path(suite, position)
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def iter_source_rows(config: BuildConfig) -> Iterator[SourceRow]:
    """Every input row of every suite; generated suites derive their seed from the build seed."""
    for position, suite in enumerate(config.suites):
        if isinstance(suite, Gsm8kSuite):
            yield from _gsm8k_rows(suite, position)
            continue
        seed = config.seed + suite.seed
        if isinstance(suite, ArithSuite):
            problems = generate_arith_problems(suite.count, seed, suite.min_steps, suite.max_steps)
        elif isinstance(suite, LogicSuite):
            problems = generate_logic_problems(
                suite.count, seed, suite.min_steps, suite.max_steps, suite.first_order_share
            )
        else:
            problems = generate_code_problems(suite.count, seed, suite.languages)
        for index, problem in enumerate(problems):
            yield SourceRow(suite.kind, index, problem)


def _gsm8k_rows(suite: Gsm8kSuite, position: int) -> Iterator[SourceRow]:
    path = gsm8k_path(suite, position)
    source = f"gsm8k:{path.name}"
    stop = None if suite.limit is None else suite.offset + suite.limit
    for index, raw in iter_gsm8k_lines(path):
        if index < suite.offset:
            continue
        if stop is not None and index >= stop:
            break
        yield SourceRow(source, index, raw)


def parse_row(row: SourceRow, max_question_bytes: int) -> Problem:
    """Turn a raw row into a problem (raises RowError naming the bad field)."""
    if isinstance(row.payload, Problem):
        return row.payload
    return parse_gsm8k_row(
        row.payload, source=row.source, index=row.index, max_question_bytes=max_question_bytes
    )
