"""LLM-as-judge step labels (METHODS.md §2(d)): a model critiques each rollout, ``votes`` times.

**Critique mode** (ProcessBench's critic). One request per rollout, with ``n = votes``: the
critique prompt (:mod:`~prmforge.annotators.judge_prompts`) shows the problem and every step as a
tagged paragraph and asks for the earliest wrong one. Each completion is read by
:func:`~prmforge.annotators.judge_parse.parse_critique` into an index (-1: no wrong step) or an
abstention. The majority index (:func:`majority_index`; a tie goes to the EARLIEST tied index,
-1 counting as later than every step -- the conservative choice, it claims the fewest correct
steps) is ``first_error``; ``hard`` follows the project's prefix rule
(:func:`~prmforge.schemas.records.prefix_labels`): True before it, False from it on.

A vote for index j says steps ``< j`` are correct and step j is wrong, and says nothing about the
steps after j; a vote for -1 says every step is correct. ``values[t]`` is the share of the votes
with an opinion on step t that call it correct (None when no vote has one)::

    votes (2, 2, -1) on four steps -> first_error 2, hard (T, T, F, F),
    values (1.0, 1.0, 1/3, 1.0), agreement 2/3

**Per-step mode.** One request per step (``n = votes``), every request of the batch in ONE
``generate`` call: step k is shown after steps ``< k`` and judged correct or not
(:func:`~prmforge.annotators.judge_parse.parse_verdict`). A step's ``hard`` is its majority
verdict (a tie is False, the conservative choice; no readable vote: None), ``values[t]`` the share
of its readable votes that say correct, and ``first_error`` is
:func:`~prmforge.annotators.tool.first_error_from_hard` of ``hard`` (the first False when only True
precedes it, -1 when all are True, None when an undecided step precedes the first False).

**Abstentions.** A vote that cannot be read is counted and kept with its reason, never read as a
default. A rollout (critique) or step (per-step) with no readable vote gets ``None`` labels; a
rollout with no decided step has ``first_error None`` and ``meta["abstained"]`` (as the annotate
stage writes for a source that cannot label). Raw responses are always kept.

**Requests.** A judge request carries a copy of the rollout's problem whose ``question`` is the
rendered judge prompt, with ``prefix = ()``: the engine renders it like any question (its
``prompt:`` options -- system message, chat template -- apply). Seeds: critique
``derive_seed("judge", seed, rollout_id)``, per-step ``derive_seed("judge-step", seed, rollout_id,
step)`` (31 bits), so a rerun (or the request cache) gives the same votes.

**Cost and provenance.** ``cost.completions`` is the completions received, ``generated_tokens``
their tokens, ``prompt_tokens`` the requests' prompt tokens (once per request),
``cached_completions`` those a cache served (every count includes cached ones), ``seconds`` each
call's wall time apportioned by generated tokens (as
:class:`~prmforge.annotators.mc.MonteCarloAnnotator` does). ``meta`` holds ``mode``, ``votes``,
``index_base``, ``prompt`` (the first prompt in full), ``prompt_sha256`` (of every prompt:
per-step prompts repeat the earlier steps, so only their hashes are kept), ``responses``,
``parsed``, ``via``, ``reasons``, ``majority``, ``agreement``, ``abstained_votes`` and
``truncated`` (completions cut at ``max_tokens``); in per-step mode ``responses``, ``parsed``,
``via``, ``reasons``, ``majority`` and ``agreement`` have one entry per step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prmforge.annotators.judge_parse import Parsed, parse_critique, parse_verdict
from prmforge.annotators.judge_prompts import (
    CRITIQUE_TEMPLATE,
    STEP_TEMPLATE,
    render_critique,
    render_step,
    validate_template,
)
from prmforge.annotators.tool import first_error_from_hard
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels, prefix_labels
from prmforge.schemas.seeds import derive_seed

__all__ = [
    "JudgeAnnotator",
    "JudgeMode",
    "JudgeTemplates",
    "critique_values",
    "judge_seed",
    "majority_index",
    "majority_verdict",
]

JudgeMode = Literal["critique", "per-step"]
_SEED_BITS = 31  # fits every backend's seed type (signed 32-bit included)


@dataclass(frozen=True, slots=True)
class JudgeTemplates:
    """The judge's prompt templates (see :mod:`~prmforge.annotators.judge_prompts` for placeholders)."""

    critique: str = CRITIQUE_TEMPLATE
    step: str = STEP_TEMPLATE

    def __post_init__(self) -> None:
        validate_template(self.critique, "critique_template", "critique")
        validate_template(self.step, "step_template", "step")


def judge_seed(seed: int, rollout_id: str, step: int | None = None) -> int:
    """The seed of a critique request (``step None``) or of the per-step request for ``step``."""
    if step is None:
        return derive_seed("judge", seed, rollout_id, bits=_SEED_BITS)
    return derive_seed("judge-step", seed, rollout_id, step, bits=_SEED_BITS)


def majority_index(votes: Sequence[int | None]) -> tuple[int | None, float | None]:
    """The most common readable index and the share of readable votes that chose it.

    A tie goes to the earliest tied index, -1 ranking after every step. No readable vote: ``(None, None)``.

    >>> majority_index([3, -1, None]), majority_index([2, 2, -1]), majority_index([None])
    ((3, 0.5), (2, 0.6666666666666666), (None, None))
    """
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None, None
    top = max(counts.values())
    winner = min((i for i, c in counts.items() if c == top), key=lambda i: (i < 0, i))
    return winner, top / sum(counts.values())


def majority_verdict(votes: Sequence[bool | None]) -> tuple[bool | None, float | None]:
    """The majority verdict (a tie is False) and the share of readable votes that gave it.

    >>> majority_verdict([True, False]), majority_verdict([True, True, None]), majority_verdict([])
    ((False, 0.5), (True, 1.0), (None, None))
    """
    readable = [v for v in votes if v is not None]
    if not readable:
        return None, None
    yes = sum(readable)
    verdict = yes > len(readable) - yes
    return verdict, (yes if verdict else len(readable) - yes) / len(readable)


def critique_values(votes: Sequence[int | None], steps: int) -> tuple[float | None, ...]:
    """Per step, the share of the votes with an opinion on it that call it correct (see the module).

    >>> critique_values([2, 2, -1], 4)
    (1.0, 1.0, 0.3333333333333333, 1.0)
    """
    values: list[float | None] = []
    for t in range(steps):
        opinions = [v for v in votes if v is not None and (v < 0 or v >= t)]
        correct = sum(v < 0 or v > t for v in opinions)
        values.append(correct / len(opinions) if opinions else None)
    return tuple(values)


@dataclass(eq=False)
class _Job:
    """One request of one rollout (``step`` None: the critique) and, once answered, its result."""

    rollout: Rollout
    step: int | None
    request: GenerationRequest
    result: GenerationResult | None = None
    seconds: float = 0.0


@dataclass
class _Votes:
    """The votes of one request, read."""

    texts: list[str] = field(default_factory=list)
    parsed: list[Parsed[Any]] = field(default_factory=list)


class JudgeAnnotator:
    """Labels steps by an LLM judge's critiques (see the module docstring).

    Args:
        policy: the judge's engine; all of a batch's requests go to ONE ``policy.generate`` call.
        mode: ``"critique"`` (one request per rollout) or ``"per-step"`` (one per step).
        votes: completions per request (``n``); the majority decides.
        sampling: sampling of every request.
        seed: base seed of :func:`judge_seed`.
        templates: the prompt templates.
        index_base: the index of the first paragraph in the prompts and answers (0 or 1).
        name: the ``source`` of the labels.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        mode: JudgeMode = "critique",
        votes: int = 3,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        templates: JudgeTemplates | None = None,
        index_base: int = 0,
        name: str = "judge",
    ) -> None:
        if votes < 1:
            raise ValueError(f"votes must be >= 1, got {votes}")
        if mode not in ("critique", "per-step"):
            raise ValueError(f"mode must be 'critique' or 'per-step', got {mode!r}")
        if index_base not in (0, 1):
            raise ValueError(f"index_base must be 0 or 1, got {index_base}")
        self._policy = policy
        self._mode: JudgeMode = mode
        self._votes = votes
        self._sampling = sampling if sampling is not None else SamplingParams()
        self._seed = seed
        self._templates = templates if templates is not None else JudgeTemplates()
        self._index_base = index_base
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        jobs = {r.rollout_id: self._jobs(_problem_of(problems, r), r) for r in rollouts}
        self._run([job for per_rollout in jobs.values() for job in per_rollout])
        return [self._finish(r, jobs[r.rollout_id]) for r in rollouts]

    def _jobs(self, problem: Problem, rollout: Rollout) -> list[_Job]:
        steps = rollout.steps
        if not steps:
            return []
        if self._mode == "critique":
            prompt = render_critique(
                self._templates.critique, problem.question, steps, index_base=self._index_base
            )
            return [
                _Job(
                    rollout, None, self._request(problem, prompt, judge_seed(self._seed, rollout.rollout_id))
                )
            ]
        return [
            _Job(
                rollout,
                k,
                self._request(
                    problem,
                    render_step(
                        self._templates.step, problem.question, steps, k, index_base=self._index_base
                    ),
                    judge_seed(self._seed, rollout.rollout_id, k),
                ),
            )
            for k in range(len(steps))
        ]

    def _request(self, problem: Problem, prompt: str, seed: int) -> GenerationRequest:
        judged = dataclasses.replace(problem, question=prompt)
        return GenerationRequest(problem=judged, prefix=(), n=self._votes, sampling=self._sampling, seed=seed)

    def _run(self, jobs: Sequence[_Job]) -> None:
        """Send every job's request in one ``generate`` call; apportion its wall time by tokens."""
        if not jobs:
            return
        started = time.perf_counter()
        results = self._policy.generate([job.request for job in jobs])
        elapsed = time.perf_counter() - started
        if len(results) != len(jobs):
            raise ValueError(f"the judge's engine returned {len(results)} results for {len(jobs)} requests")
        for job, result in zip(jobs, results, strict=True):
            if len(result.completions) != self._votes:
                where = "critique" if job.step is None else f"step {job.step}"
                raise ValueError(
                    f"rollout {job.rollout.rollout_id!r} {where}: the judge's engine returned "
                    f"{len(result.completions)} completions, {self._votes} requested"
                )
            job.result = result
        tokens = [sum(c.tokens for c in r.completions) for r in results]
        shares = tokens if sum(tokens) > 0 else [1] * len(jobs)
        for job, share in zip(jobs, shares, strict=True):
            job.seconds = elapsed * share / sum(shares)

    def _read(self, job: _Job) -> _Votes:
        assert job.result is not None
        votes = _Votes()
        for completion in job.result.completions:
            votes.texts.append(completion.text)
            if job.step is None:
                votes.parsed.append(parse_critique(completion.text, len(job.rollout.steps), self._index_base))
            else:
                votes.parsed.append(parse_verdict(completion.text))
        return votes

    def _finish(self, rollout: Rollout, jobs: Sequence[_Job]) -> StepLabels:
        meta: dict[str, Any] = {"mode": self._mode, "votes": self._votes, "index_base": self._index_base}
        if not jobs:  # nothing to judge: vacuously no wrong step, as for every source
            return StepLabels(self._name, rollout.rollout_id, (), (), -1, Cost(), meta)
        read = [self._read(job) for job in jobs]
        results = [job.result for job in jobs if job.result is not None]
        completions = [c for r in results for c in r.completions]
        cost = Cost(
            completions=len(completions),
            generated_tokens=sum(c.tokens for c in completions),
            seconds=sum(job.seconds for job in jobs),
            cached_completions=sum(len(r.completions) for r in results if r.cached),
            prompt_tokens=sum(r.prompt_tokens for r in results),
        )
        meta.update(
            prompt=jobs[0].request.problem.question,
            prompt_sha256=[hashlib.sha256(j.request.problem.question.encode()).hexdigest() for j in jobs],
            truncated=sum(c.finish_reason == "length" for c in completions),
            abstained_votes=sum(p.value is None for v in read for p in v.parsed),
        )
        if self._mode == "critique":
            return self._critique_labels(rollout, read[0], cost, meta)
        return self._step_labels(rollout, read, cost, meta)

    def _critique_labels(
        self, rollout: Rollout, votes: _Votes, cost: Cost, meta: dict[str, Any]
    ) -> StepLabels:
        steps = len(rollout.steps)
        indices: list[int | None] = [p.value for p in votes.parsed]
        majority, agreement = majority_index(indices)
        meta.update(
            responses=votes.texts,
            parsed=indices,
            via=[p.via for p in votes.parsed],
            reasons=[p.reason or None for p in votes.parsed],
            majority=majority,
            agreement=agreement,
        )
        if majority is None:
            meta["abstained"] = f"none of the {self._votes} critiques named a step: {votes.parsed[0].reason}"
            unknown = (None,) * steps
            return StepLabels(self._name, rollout.rollout_id, unknown, unknown, None, cost, meta)
        hard: tuple[bool | None, ...] = prefix_labels(majority, steps)
        values = critique_values(indices, steps)
        return StepLabels(self._name, rollout.rollout_id, values, hard, majority, cost, meta)

    def _step_labels(
        self, rollout: Rollout, read: Sequence[_Votes], cost: Cost, meta: dict[str, Any]
    ) -> StepLabels:
        verdicts: list[list[bool | None]] = [[p.value for p in v.parsed] for v in read]
        decided = [majority_verdict(v) for v in verdicts]
        hard = tuple(verdict for verdict, _ in decided)
        values = tuple(_share_correct(vs) for vs in verdicts)
        meta.update(
            responses=[v.texts for v in read],
            parsed=verdicts,
            via=[[p.via for p in v.parsed] for v in read],
            reasons=[[p.reason or None for p in v.parsed] for v in read],
            majority=list(hard),
            agreement=[agreement for _, agreement in decided],
        )
        first_error = first_error_from_hard(hard)
        if all(h is None for h in hard):
            meta["abstained"] = f"no step got a readable verdict: {read[0].parsed[0].reason}"
        return StepLabels(self._name, rollout.rollout_id, values, hard, first_error, cost, meta)


def _share_correct(verdicts: Sequence[bool | None]) -> float | None:
    readable = [v for v in verdicts if v is not None]
    return sum(readable) / len(readable) if readable else None


def _problem_of(problems: Mapping[str, Problem], rollout: Rollout) -> Problem:
    try:
        return problems[rollout.problem_id]
    except KeyError:
        missing = f"problem {rollout.problem_id!r} is not among the problems given"
        raise ValueError(f"rollout {rollout.rollout_id!r}: {missing}") from None
