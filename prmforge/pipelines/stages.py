"""The spine's stages as functions over one shard's records.

Each stage returns its output records and the input rows it quarantined, so
that ``rows_in == accepted + quarantined`` can be checked for every stage. A
stage that fails on a whole batch is retried row by row to isolate the poison
rows; only the rows that fail alone are quarantined.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prmforge.annotators.base import Annotator
from prmforge.policies.base import GenerationRequest, Policy
from prmforge.schemas.arrow import QuarantineEntry, quarantine_entry
from prmforge.schemas.errors import RowError
from prmforge.schemas.records import (
    PRMExample,
    Problem,
    Rollout,
    SamplingParams,
    Split,
    StepLabels,
    StepTruth,
    Vote,
)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SourceRow:
    """An input row before validation: raw bytes from a file, or a generated problem."""

    source: str
    index: int
    payload: bytes | Problem


@dataclass(slots=True)
class StageOutput(Generic[T]):
    records: list[T] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    rows_in: int = 0

    @property
    def accepted(self) -> int:
        return self.rows_in - len(self.quarantined)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions."""
    blob = json.dumps([str(p) for p in parts]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def _describe(record: object) -> bytes:
    if isinstance(record, Problem):
        return json.dumps({"problem_id": record.problem_id, "question": record.question}).encode()
    if isinstance(record, Rollout):
        return json.dumps({"rollout_id": record.rollout_id, "text": record.text}).encode()
    return repr(record).encode()


def isolate_failures(
    stage: str,
    items: Sequence[T],
    run: Callable[[Sequence[T]], list[R]],
    key: Callable[[T], tuple[str, int]],
    errors: tuple[type[Exception], ...] = (ValueError, KeyError, ArithmeticError),
) -> tuple[list[tuple[T, R]], list[QuarantineEntry]]:
    """Run ``run`` on the batch; on a listed error, run each item alone and quarantine those that fail."""
    try:
        return list(zip(items, run(items), strict=True)), []
    except errors as err:
        first_error = err
    done: list[tuple[T, R]] = []
    bad: list[QuarantineEntry] = []
    for item in items:
        try:
            if len(items) == 1:  # the batch was this one item: its error is already known
                raise first_error
            done.append((item, run([item])[0]))
        except errors as err:
            source, index = key(item)
            reason = f"{type(err).__name__}: {err}"
            bad.append(
                quarantine_entry(
                    stage=stage, source=source, index=index, field="<row>", reason=reason, raw=_describe(item)
                )
            )
    return done, bad


def load_stage(rows: Sequence[SourceRow], parse: Callable[[SourceRow], Problem]) -> StageOutput[Problem]:
    """Validate input rows into problems; a bad row is quarantined with the field and reason."""
    out: StageOutput[Problem] = StageOutput(rows_in=len(rows))
    for row in rows:
        if isinstance(row.payload, Problem):
            out.records.append(row.payload)
            continue
        try:
            out.records.append(parse(row))
        except RowError as err:
            out.quarantined.append(
                quarantine_entry(
                    stage="load",
                    source=row.source,
                    index=row.index,
                    field=err.field,
                    reason=err.reason,
                    raw=row.payload,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class GenerateSettings:
    rollouts_per_problem: int
    sampling: SamplingParams
    seed: int


def rollout_id(problem_id: str, policy: str, sampling: SamplingParams, seed: int, index: int) -> str:
    blob = json.dumps([problem_id, policy, sampling.as_dict(), seed, index], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def generate_stage(
    problems: Sequence[Problem],
    policy: Policy,
    settings: GenerateSettings,
    grade: Callable[[Problem, str], tuple[str | None, bool | None]],
    segment: Callable[[Problem, str], tuple[str, ...]],
    truth: Callable[[Problem, Sequence[str]], StepTruth | None],
) -> StageOutput[Rollout]:
    """Sample rollouts, segment them into steps, grade the outcome and attach truth (for evaluation)."""
    out: StageOutput[Rollout] = StageOutput(rows_in=len(problems))

    def run(batch: Sequence[Problem]) -> list[list[Rollout]]:
        seeds = [derive_seed(settings.seed, "generate", p.problem_id) for p in batch]
        requests = [
            GenerationRequest(p.question, (), settings.rollouts_per_problem, settings.sampling, seed)
            for p, seed in zip(batch, seeds, strict=True)
        ]
        results = policy.generate(requests)
        produced = []
        for problem, result, req_seed in zip(batch, results, seeds, strict=True):
            rollouts = []
            for i, completion in enumerate(result.completions):
                steps = segment(problem, completion.text)
                final_answer, outcome = grade(problem, completion.text)
                rollouts.append(
                    Rollout(
                        rollout_id=rollout_id(
                            problem.problem_id, policy.fingerprint, settings.sampling, req_seed, i
                        ),
                        problem_id=problem.problem_id,
                        policy=policy.fingerprint,
                        sampling=settings.sampling,
                        seed=req_seed,
                        text=completion.text,
                        steps=steps,
                        final_answer=final_answer,
                        outcome=outcome,
                        prompt_tokens=result.prompt_tokens,
                        completion_tokens=completion.tokens,
                        truth=truth(problem, steps),
                    )
                )
            produced.append(rollouts)
        return produced

    done, bad = isolate_failures("generate", problems, run, lambda p: (p.source, -1))
    for _, rollouts in done:
        out.records.extend(rollouts)
    out.quarantined.extend(bad)
    return out


def annotate_stage(
    problems: Mapping[str, Problem], rollouts: Sequence[Rollout], annotator: Annotator
) -> StageOutput[StepLabels]:
    """Label every step; annotators only ever see redacted rollouts."""
    out: StageOutput[StepLabels] = StageOutput(rows_in=len(rollouts))
    redacted = [r.redacted() for r in rollouts]
    done, bad = isolate_failures(
        f"annotate:{annotator.name}",
        redacted,
        lambda batch: annotator.annotate(problems, batch),
        lambda r: (problems[r.problem_id].source if r.problem_id in problems else "?", -1),
    )
    out.records.extend(labels for _, labels in done)
    out.quarantined.extend(bad)
    return out


def split_for(problem_id: str, seed: int, validation: float) -> Split:
    """Deterministic split by problem, so no problem straddles train and validation."""
    if validation <= 0.0:
        return "train"
    u = derive_seed(seed, "split", problem_id) / float(1 << 63)
    return "validation" if u < validation else "train"


def assemble_example(
    problem: Problem,
    rollout: Rollout,
    labels: StepLabels,
    after_first_error: str,
    split: Split,
) -> PRMExample:
    """One source's labels become a trainable row (fusion of several sources comes later)."""
    if labels.first_error is None:
        # The rollout id is in the quarantine row's preview; the reason stays the same for all, so it counts.
        raise ValueError(f"{labels.source} could not decide a first error (an unchecked step comes first)")
    fe = labels.first_error
    steps = rollout.steps
    hard = tuple(fe < 0 or t < fe for t in range(len(steps)))
    scores = labels.values
    if after_first_error == "truncate" and fe >= 0:
        steps, hard, scores = steps[: fe + 1], hard[: fe + 1], scores[: fe + 1]
    truth = rollout.truth
    return PRMExample(
        example_id=rollout.rollout_id,
        problem_id=problem.problem_id,
        prompt=problem.question,
        completions=steps,
        labels=hard,
        scores=scores,
        first_error=fe,
        votes=(Vote(labels.source, labels.first_error),),
        agreement=1.0,
        weight=1.0,
        split=split,
        gold=problem.gold,
        final_answer=rollout.final_answer,
        outcome=rollout.outcome,
        truth_first_error=truth.first_error if truth else None,
        truth_step_correct=truth.step_correct if truth else None,
    )


def assemble_stage(
    problems: Mapping[str, Problem],
    rollouts: Sequence[Rollout],
    labels: Sequence[StepLabels],
    after_first_error: str,
    seed: int,
    validation: float,
) -> StageOutput[PRMExample]:
    """Join each label record with its rollout; rollouts quarantined earlier never arrive here."""
    by_id = {r.rollout_id: r for r in rollouts}
    out: StageOutput[PRMExample] = StageOutput(rows_in=len(labels))
    for lab in labels:
        rollout = by_id[lab.rollout_id]
        problem = problems[rollout.problem_id]
        try:
            split = split_for(problem.problem_id, seed, validation)
            out.records.append(assemble_example(problem, rollout, lab, after_first_error, split))
        except ValueError as err:
            out.quarantined.append(
                quarantine_entry(
                    stage="assemble",
                    source=problem.source,
                    index=-1,
                    field="first_error",
                    reason=str(err),
                    raw=_describe(rollout),
                )
            )
    return out
