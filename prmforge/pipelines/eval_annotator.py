"""Score an annotator on ProcessBench-format data (human first-error labels), as ``run_eval.py`` does.

Input: a JSON list of ``{"id", "generator", "problem", "steps": [str],
"final_answer_correct", "label"}`` where ``label`` is the index of the first
erroneous step (-1: none). Each item becomes a :class:`Problem` (domain
``math``, an empty ``gold``: the gold answer is unknown) and a redacted
:class:`Rollout` (the steps as given, ``outcome = final_answer_correct``); the
label never reaches the annotator.

Predictions. ``score`` uses the annotator's ``first_error``. ProcessBench
gives every sample a prediction; an annotator that cannot tell (``None``) is
counted as predicting -1 ("no error found") by default (``none_as=-1``), or as
a miss in both classes with ``none_as=None`` (the convention of
:func:`~prmforge.annotators.metrics.processbench_f1` for an unparseable critic
answer). ``flag_score`` predicts the first step the annotator labels invalid
(``hard is False``) whatever precedes it, else -1: the natural reading of a
precision-first checker that abstains on most steps.

Step flags: ``steps_flagged`` counts steps labelled invalid; of those,
``flagged_exact`` are the labelled first error, ``flagged_after`` come after it,
``flagged_before`` come before it (false alarms), ``flagged_in_correct`` sit in
fully correct solutions (false alarms). ``coverage`` is the share of steps
with a known label (``hard is not None``).

Annotators (:func:`build_annotator`): the tool annotators ``equations`` and
``z3``, and ``judge``, an LLM judge whose configuration a YAML or JSON file
gives (:func:`load_judge_config`): either one annotator config, e.g.
``{kind: judge, engine: {kind: transformers, model: ./judge-model}, votes: 3}``,
or a build configuration whose ``annotate:`` list holds exactly one ``judge``
entry (only that entry is read and validated). The judge's engine is built by
:func:`prmforge.policies.factory.build_engine`, without a request cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prmforge.annotators.base import Annotator
from prmforge.annotators.config import AnnotatorContext
from prmforge.annotators.metrics import FlagPrecision, ProcessBenchScore, flag_precision, processbench_f1
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy
from prmforge.schemas.errors import ConfigError, RowError
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels

if TYPE_CHECKING:
    from prmforge.annotators.judge_config import JudgeConfig

ANNOTATORS = ("equations", "z3", "judge")

__all__ = [
    "EvalReport",
    "ProcessBenchItem",
    "build_annotator",
    "evaluate_annotator",
    "evaluate_labels",
    "item_records",
    "load_judge_config",
    "load_processbench",
]


@dataclass(frozen=True, slots=True)
class ProcessBenchItem:
    item_id: str
    generator: str
    problem: str
    steps: tuple[str, ...]
    final_answer_correct: bool | None
    label: int


def _field(row: dict[str, Any], name: str, kind: type) -> Any:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RowError(name, f"expected {kind.__name__}, found {type(value).__name__}")
    return value


def load_processbench(path: Path, limit: int | None = None) -> list[ProcessBenchItem]:
    """Read the items (the first ``limit`` of them); raises :class:`RowError` naming item and field."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise RowError("<file>", "expected a JSON list of ProcessBench items")
    items = []
    for index, row in enumerate(rows[:limit] if limit is not None else rows):
        try:
            if not isinstance(row, dict):
                raise RowError("<row>", f"expected an object, found {type(row).__name__}")
            steps = _field(row, "steps", list)
            if not all(isinstance(s, str) for s in steps):
                raise RowError("steps", "every step must be a string")
            label = _field(row, "label", int)
            if not -1 <= label < len(steps):
                raise RowError("label", f"{label} is not -1 or a step index below {len(steps)}")
            correct = row.get("final_answer_correct")
            items.append(
                ProcessBenchItem(
                    item_id=str(row.get("id", index)),
                    generator=str(row.get("generator", "")),
                    problem=_field(row, "problem", str),
                    steps=tuple(steps),
                    final_answer_correct=correct if isinstance(correct, bool) else None,
                    label=label,
                )
            )
        except RowError as err:
            raise RowError(f"item {index}.{err.field}", err.reason) from None
    return items


def item_records(item: ProcessBenchItem, source: str = "processbench") -> tuple[Problem, Rollout]:
    """The problem (gold unknown) and the redacted rollout an item stands for."""
    problem = Problem(
        problem_id=item.item_id,
        domain="math",
        question=item.problem,
        gold="",
        source=source,
        meta={"generator": item.generator},
    )
    rollout = Rollout(
        rollout_id=hashlib.sha256(f"{source}|{item.item_id}".encode()).hexdigest()[:24],
        problem_id=item.item_id,
        policy=item.generator,
        sampling=SamplingParams(),
        seed=0,
        text="\n\n".join(item.steps),
        steps=item.steps,
        final_answer=None,
        outcome=item.final_answer_correct,
        prompt_tokens=0,
        completion_tokens=0,
    )
    return problem, rollout


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What :func:`evaluate_annotator` measured (see the module docstring)."""

    annotator: str
    items: int
    score: ProcessBenchScore
    flag_score: ProcessBenchScore
    flags: FlagPrecision
    unknown_first_error: int
    steps: int
    steps_checked: int
    coverage: float
    steps_flagged: int
    flagged_exact: int
    flagged_after: int
    flagged_before: int
    flagged_in_correct: int
    cost: Cost
    predictions: tuple[int | None, ...]
    flag_predictions: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def step_flag_precision(self) -> float:
        """Share of flagged steps that are the labelled first error (``nan`` without flags)."""
        return self.flagged_exact / self.steps_flagged if self.steps_flagged else math.nan

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["step_flag_precision"] = self.step_flag_precision
        return data


def evaluate_labels(
    name: str, labels: Sequence[int], step_labels: Sequence[StepLabels], none_as: int | None = -1
) -> EvalReport:
    """The report for annotations already made (one :class:`StepLabels` per item, in order)."""
    if len(labels) != len(step_labels):
        raise ValueError(f"{len(step_labels)} annotations for {len(labels)} labels")
    predictions = tuple(none_as if s.first_error is None else s.first_error for s in step_labels)
    flag_predictions = tuple(next((t for t, h in enumerate(s.hard) if h is False), -1) for s in step_labels)
    steps = checked = flagged = exact = after = before = in_correct = 0
    cost = Cost()
    for label, s in zip(labels, step_labels, strict=True):
        steps += len(s.hard)
        checked += sum(h is not None for h in s.hard)
        cost = cost + s.cost
        for t, h in enumerate(s.hard):
            if h is not False:
                continue
            flagged += 1
            if label == -1:
                in_correct += 1
            elif t == label:
                exact += 1
            elif t > label:
                after += 1
            else:
                before += 1
    return EvalReport(
        annotator=name,
        items=len(labels),
        score=processbench_f1(predictions, labels),
        flag_score=processbench_f1(flag_predictions, labels),
        flags=flag_precision(predictions, labels),
        unknown_first_error=sum(s.first_error is None for s in step_labels),
        steps=steps,
        steps_checked=checked,
        coverage=checked / steps if steps else math.nan,
        steps_flagged=flagged,
        flagged_exact=exact,
        flagged_after=after,
        flagged_before=before,
        flagged_in_correct=in_correct,
        cost=cost,
        predictions=predictions,
        flag_predictions=flag_predictions,
        labels=tuple(labels),
    )


def evaluate_annotator(
    items_path: Path, annotator: Annotator, limit: int | None = None, none_as: int | None = -1
) -> EvalReport:
    """Run ``annotator`` on the first ``limit`` items of ``items_path`` and score it."""
    items = load_processbench(items_path, limit)
    source = f"processbench:{Path(items_path).name}"
    records = [item_records(item, source) for item in items]
    problems = {problem.problem_id: problem for problem, _ in records}
    if len(problems) != len(records):
        raise RowError("id", "item ids must be unique")
    step_labels = annotator.annotate(problems, [rollout.redacted() for _, rollout in records])
    return evaluate_labels(annotator.name, [item.label for item in items], step_labels, none_as)


def build_annotator(
    name: str, *, z3_rlimit: int | None = None, config: Path | None = None, seed: int = 0
) -> Annotator:
    """The annotator called ``name``: ``"equations"``, ``"z3"`` (``z3_rlimit``: its Z3 budget) or
    ``"judge"`` (``config``: its configuration file, see :func:`load_judge_config`; ``seed``: the
    seed of its votes).

    Raises :class:`ValueError` for an unknown name or a missing configuration, :class:`ConfigError`
    for an invalid one; whatever building the judge's engine raises (a missing model) passes through.
    """
    from prmforge.annotators.kinds import EquationsConfig, Z3Config

    if name not in ANNOTATORS:
        raise ValueError(f"unknown annotator {name!r}: choose {', '.join(map(repr, ANNOTATORS))}")
    if (name == "judge") != (config is not None):
        raise ValueError(
            "the judge needs its configuration file (--config)"
            if config is None
            else f"{name!r} takes no configuration file; --config is for the judge"
        )
    if config is not None:
        spec: Any = load_judge_config(config)
    elif name == "equations":
        spec = EquationsConfig()
    else:
        spec = Z3Config() if z3_rlimit is None else Z3Config(rlimit=z3_rlimit)
    context = AnnotatorContext(
        policy=_NoPolicy(), seed=seed, isolation="bwrap", programs=lambda: None, engine=_build_engine
    )
    annotator: Annotator = spec.build(context).annotator
    return annotator


def load_judge_config(path: Path) -> JudgeConfig:
    """The judge config a YAML/JSON file gives: the file itself, or the one judge of its ``annotate:``."""
    import yaml
    from pydantic import ValidationError

    from prmforge.annotators.judge_config import JudgeConfig
    from prmforge.schemas.config_errors import format_validation_error

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the judge configuration ({err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML or JSON: {err}") from None
    origin = str(path)
    if isinstance(data, dict) and "annotate" in data and "kind" not in data:
        entries = data["annotate"]
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: annotate: must be a list of annotators")
        judges = [i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("kind") == "judge"]
        if len(judges) != 1:
            where = ", ".join(f"annotate.{i}" for i in judges) or "none"
            raise ConfigError(
                f"{path}: annotate: holds {len(judges)} judge entries ({where}); eval-annotator needs "
                "exactly one: put it in a file of its own"
            )
        origin = f"{path} (annotate.{judges[0]})"
        data = entries[judges[0]]
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a judge annotator config (a mapping with kind: judge)")
    if data.get("kind") != "judge":
        raise ConfigError(
            f"{origin}: kind: expected 'judge', found {data.get('kind')!r} (eval-annotator --config is "
            "for the judge; the tool annotators need no file)"
        )
    try:
        return JudgeConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin, data, JudgeConfig)) from None


def _build_engine(config: Any) -> Policy:
    """The model engine ``config`` names (imported here: the engines load heavy libraries)."""
    from prmforge.policies.factory import build_engine

    engine: Policy = build_engine(config)
    return engine


class _NoPolicy:
    """Evaluated annotators never continue rollouts: the policy slot of their context refuses to
    (a judge samples from its own engine)."""

    fingerprint = "none"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        raise ValueError("eval-annotator gives annotators no rollout policy to continue prefixes with")
