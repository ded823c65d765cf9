"""The LLM judge annotator, on a replaying test double: requests, votes, labels, cost and provenance."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from judge_replay import ReplayPolicy, by_problem, by_step

from prmforge.annotators import judge
from prmforge.annotators.base import Annotator
from prmforge.annotators.config import AnnotatorContext
from prmforge.annotators.judge import JudgeAnnotator, JudgeTemplates, judge_seed
from prmforge.annotators.judge_config import JudgeConfig
from prmforge.annotators.judge_prompts import CRITIQUE_TEMPLATE, STEP_TEMPLATE, render_critique, render_step
from prmforge.policies.base import Completion, GenerationRequest
from prmforge.schemas.engines import OpenAIEngineConfig, TransformersEngineConfig
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels
from prmforge.schemas.seeds import derive_seed

SAMPLING = SamplingParams(temperature=0.7, top_p=1.0, max_tokens=64)
STEPS = ("2 + 3 = 5.", "5 * 2 = 11.", "11 - 1 = 10.", "The answer is 10.")


def problem(problem_id: str = "p0", domain: Any = "math") -> Problem:
    return Problem(problem_id, domain, f"question of {problem_id}?", "9", "test", {"k": "v"})


def rollout(problem_id: str = "p0", steps: Sequence[str] = STEPS, rollout_id: str | None = None) -> Rollout:
    return Rollout(
        rollout_id=rollout_id or f"r-{problem_id}",
        problem_id=problem_id,
        policy="test",
        sampling=SamplingParams(),
        seed=0,
        text="\n\n".join(steps),
        steps=tuple(steps),
        final_answer=None,
        outcome=None,
        prompt_tokens=0,
        completion_tokens=0,
    )


def critique(
    replies: Mapping[str, Sequence[Any]], votes: int = 3, **kwargs: Any
) -> tuple[JudgeAnnotator, ReplayPolicy]:
    policy = ReplayPolicy(by_problem(replies))
    return JudgeAnnotator(policy, votes=votes, sampling=SAMPLING, seed=7, **kwargs), policy


def label_one(annotator: JudgeAnnotator, steps: Sequence[str] = STEPS) -> StepLabels:
    (labels,) = annotator.annotate({"p0": problem()}, [rollout(steps=steps)])
    return labels


def test_doctests() -> None:
    assert doctest.testmod(judge).failed == 0


def test_it_is_an_annotator() -> None:
    annotator, _ = critique({})
    assert isinstance(annotator, Annotator)
    assert annotator.name == "judge"


def test_critique_majority_labels_values_and_provenance() -> None:
    texts = [r"Paragraph 1 says 10 = 11. \boxed{1}", r"\boxed{1}", "All steps are correct."]
    annotator, _ = critique({"p0": texts})
    labels = label_one(annotator)
    assert labels.source == "judge"
    assert labels.rollout_id == "r-p0"
    assert labels.first_error == 1
    assert labels.hard == (True, False, False, False)
    assert labels.values == (1.0, 1 / 3, 1.0, 1.0)
    prompt = render_critique(CRITIQUE_TEMPLATE, "question of p0?", STEPS)
    assert labels.meta == {
        "mode": "critique",
        "votes": 3,
        "index_base": 0,
        "prompt": prompt,
        "prompt_sha256": [hashlib.sha256(prompt.encode()).hexdigest()],
        "truncated": 0,
        "abstained_votes": 0,
        "responses": texts,
        "parsed": [1, 1, -1],
        "via": ["boxed", "boxed", "phrase"],
        "reasons": [None, None, None],
        "majority": 1,
        "agreement": 2 / 3,
    }
    json.dumps(labels.meta)  # provenance travels as JSON


def test_the_request_is_the_rendered_prompt_as_a_question_with_no_prefix() -> None:
    annotator, policy = critique({"p0": ["-1"] * 3})
    label_one(annotator)
    (request,) = policy.requests
    assert request == GenerationRequest(
        problem=Problem(
            "p0",
            "math",
            render_critique(CRITIQUE_TEMPLATE, "question of p0?", STEPS),
            "9",
            "test",
            {"k": "v"},
        ),
        prefix=(),
        n=3,
        sampling=SAMPLING,
        seed=judge_seed(7, "r-p0"),
    )


def test_seeds_are_stable_and_distinct() -> None:
    assert judge_seed(0, "r0") == derive_seed("judge", 0, "r0", bits=31) == 933080067
    assert judge_seed(7, "r1") == 217632807
    assert judge_seed(7, "r1", 0) == derive_seed("judge-step", 7, "r1", 0, bits=31) == 499631984
    assert judge_seed(7, "r1", 2) == 445091238
    replies = {"p0": ["-1"] * 3, "p1": ["-1"] * 3}
    first, first_policy = critique(replies)
    again, again_policy = critique(replies)
    rollouts = [rollout("p0"), rollout("p1")]
    problems = {"p0": problem("p0"), "p1": problem("p1")}
    untimed = [
        dataclasses.replace(s, cost=dataclasses.replace(s.cost, seconds=0.0))
        for s in first.annotate(problems, rollouts)
    ]
    assert untimed == [
        dataclasses.replace(s, cost=dataclasses.replace(s.cost, seconds=0.0))
        for s in again.annotate(problems, rollouts)
    ]
    assert first_policy.requests == again_policy.requests
    assert [r.seed for r in first_policy.requests] == [judge_seed(7, "r-p0"), judge_seed(7, "r-p1")]
    assert len({r.seed for r in first_policy.requests}) == 2


@pytest.mark.parametrize(
    ("indices", "first_error", "agreement"),
    [
        ((3, 1), 1, 0.5),  # a tie goes to the earliest index
        ((-1, 2), 2, 0.5),  # -1 ranks after every step
        ((1, 1, -1, -1), 1, 0.5),
        ((2, 2, 0), 2, 2 / 3),  # a strict majority wins even when it is later
        ((-1, -1, 0), -1, 2 / 3),
    ],
)
def test_majority_and_tie_rule(indices: tuple[int, ...], first_error: int, agreement: float) -> None:
    annotator, _ = critique({"p0": [rf"\boxed{{{i}}}" for i in indices]}, votes=len(indices))
    labels = label_one(annotator)
    assert (labels.first_error, labels.meta["majority"], labels.meta["agreement"]) == (
        first_error,
        first_error,
        agreement,
    )


def test_all_correct_majority_labels_every_step_true() -> None:
    annotator, _ = critique({"p0": [r"\boxed{-1}", r"\boxed{-1}", r"\boxed{3}"]})
    labels = label_one(annotator)
    assert labels.first_error == -1
    assert labels.hard == (True, True, True, True)
    assert labels.values == (1.0, 1.0, 1.0, 2 / 3)


def test_unreadable_and_out_of_range_votes_abstain_and_are_kept() -> None:
    texts = ["I like turtles.", r"\boxed{4}", r"\boxed{2}"]
    annotator, _ = critique({"p0": texts})
    labels = label_one(annotator)
    assert (labels.first_error, labels.hard, labels.values) == (
        2,
        (True, True, False, False),
        (1.0, 1.0, 0.0, None),
    )
    assert labels.meta["parsed"] == [None, None, 2]
    assert labels.meta["via"] == ["", "boxed", "boxed"]
    assert labels.meta["reasons"] == [
        "no \\boxed{} answer, JSON index, or phrase naming the earliest wrong step",
        "index 4 is out of range: -1 or 0..3 for 4 steps (0-based)",
        None,
    ]
    assert labels.meta["abstained_votes"] == 2
    assert labels.meta["agreement"] == 1.0
    assert labels.meta["responses"] == texts
    assert "abstained" not in labels.meta


def test_a_rollout_whose_votes_are_all_unreadable_abstains_with_its_texts() -> None:
    texts = ["gibberish", r"\boxed{7}", r"\boxed{maybe"]
    annotator, _ = critique({"p0": texts})
    labels = label_one(annotator)
    assert (labels.first_error, labels.hard, labels.values) == (None, (None,) * 4, (None,) * 4)
    assert labels.meta["abstained"] == (
        "none of the 3 critiques named a step: no \\boxed{} answer, JSON index, or phrase naming the "
        "earliest wrong step"
    )
    assert labels.meta["responses"] == texts
    assert labels.meta["parsed"] == [None, None, None]
    assert (labels.meta["majority"], labels.meta["agreement"], labels.meta["abstained_votes"]) == (
        None,
        None,
        3,
    )
    assert labels.cost.completions == 3


def test_cost_counts_completions_tokens_truncation_and_cache() -> None:
    texts = [Completion(r"one two \boxed{0}", 3), Completion("cut off", 64, "length")]
    policy = ReplayPolicy(by_problem({"p0": texts, "p1": texts}), cached=True)
    annotator = JudgeAnnotator(policy, votes=2, sampling=SAMPLING)
    problems = {"p0": problem("p0"), "p1": problem("p1")}
    out = annotator.annotate(problems, [rollout("p0"), rollout("p1", steps=STEPS[:2])])
    for labels in out:
        assert (labels.cost.completions, labels.cost.generated_tokens, labels.cost.cached_completions) == (
            2,
            67,
            2,
        )
        assert labels.cost.tool_calls == 0
        assert labels.cost.seconds >= 0
        assert labels.meta["truncated"] == 1
    assert [labels.cost.prompt_tokens for labels in out] == [len(r.prompt.split()) for r in policy.requests]
    assert out[0].cost.prompt_tokens > out[1].cost.prompt_tokens > 0
    assert sum(labels.cost.seconds for labels in out) > 0


def test_one_generate_call_per_batch() -> None:
    annotator, policy = critique({f"p{i}": [r"\boxed{0}"] * 3 for i in range(3)})
    problems = {f"p{i}": problem(f"p{i}") for i in range(3)}
    annotator.annotate(problems, [rollout(f"p{i}") for i in range(3)])
    assert [len(call) for call in policy.calls] == [3]
    assert [r.problem_id for r in policy.requests] == ["p0", "p1", "p2"]


def test_rollouts_without_steps_send_no_request() -> None:
    annotator, policy = critique({"p0": [r"\boxed{0}"] * 3})
    (labels,) = annotator.annotate({"p0": problem()}, [rollout(steps=())])
    assert policy.calls == []
    assert (labels.values, labels.hard, labels.first_error, labels.cost) == ((), (), -1, Cost())


def test_a_missing_problem_and_a_short_result_are_errors() -> None:
    annotator, _ = critique({"p0": [r"\boxed{0}"] * 2})
    with pytest.raises(ValueError, match="rollout 'r-p9': problem 'p9' is not among the problems given"):
        annotator.annotate({"p0": problem()}, [rollout("p9")])
    with pytest.raises(
        ValueError, match="rollout 'r-p0' critique: the judge's engine returned 2 completions, 3"
    ):
        annotator.annotate({"p0": problem()}, [rollout()])


def test_one_based_templates() -> None:
    template = "{problem}\n{tagged_steps}\nName the first wrong paragraph (1..{last_index}) in \\boxed{}."
    texts = [r"\boxed{2}", r"\boxed{2}", r"\boxed{0}"]
    annotator, policy = critique({"p0": texts}, templates=JudgeTemplates(critique=template), index_base=1)
    labels = label_one(annotator)
    assert labels.first_error == 1
    assert labels.meta["parsed"] == [1, 1, None]
    assert labels.meta["reasons"][2] == "index 0 is out of range: -1 or 1..4 for 4 steps (1-based)"
    assert policy.requests[0].question == render_critique(template, "question of p0?", STEPS, index_base=1)
    assert "<paragraph_1>\n2 + 3 = 5.\n</paragraph_1>" in policy.requests[0].question


def test_constructor_checks() -> None:
    policy = ReplayPolicy(by_problem({}))
    with pytest.raises(ValueError, match="votes must be >= 1, got 0"):
        JudgeAnnotator(policy, votes=0)
    with pytest.raises(ValueError, match="mode must be 'critique' or 'per-step', got 'vote'"):
        JudgeAnnotator(policy, mode="vote")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index_base must be 0 or 1, got 2"):
        JudgeAnnotator(policy, index_base=2)
    with pytest.raises(ValueError, match="critique_template: the critique template must contain"):
        JudgeTemplates(critique="{problem}")


# ---------------------------------------------------------------- per-step mode


def per_step(
    replies: Mapping[str, Sequence[Sequence[Any]]], votes: int = 3
) -> tuple[JudgeAnnotator, ReplayPolicy]:
    policy = ReplayPolicy(by_step(replies))
    return JudgeAnnotator(policy, mode="per-step", votes=votes, sampling=SAMPLING, seed=7), policy


def test_per_step_majorities_ties_and_first_error() -> None:
    replies = [
        [r"\boxed{correct}", "Yes.", r"\boxed{correct}"],
        [r"\boxed{incorrect}", r"\boxed{correct}", "hmm"],  # a tie of readable votes is False
        ["No.", r"\boxed{incorrect}", '{"correct": false}'],
        [r"\boxed{correct}"] * 3,  # judged alone, a later step may be right
    ]
    annotator, policy = per_step({"p0": replies})
    labels = label_one(annotator)
    assert labels.hard == (True, False, False, True)
    assert labels.values == (1.0, 0.5, 0.0, 1.0)
    assert labels.first_error == 1
    assert labels.meta["majority"] == [True, False, False, True]
    assert labels.meta["agreement"] == [1.0, 0.5, 1.0, 1.0]
    assert labels.meta["parsed"] == [
        [True, True, True],
        [False, True, None],
        [False, False, False],
        [True, True, True],
    ]
    assert labels.meta["via"][1] == ["boxed", "boxed", ""]
    assert labels.meta["reasons"][1] == [None, None, "no \\boxed{} verdict, JSON verdict, or verdict word"]
    assert labels.meta["responses"] == replies
    assert labels.meta["abstained_votes"] == 1
    prompts = [render_step(STEP_TEMPLATE, "question of p0?", STEPS, k) for k in range(4)]
    assert labels.meta["prompt"] == prompts[0]
    assert labels.meta["prompt_sha256"] == [hashlib.sha256(p.encode()).hexdigest() for p in prompts]
    assert [r.question for r in policy.requests] == prompts
    assert [r.seed for r in policy.requests] == [judge_seed(7, "r-p0", k) for k in range(4)]
    assert (labels.cost.completions, labels.cost.generated_tokens) == (
        12,
        sum(len(t.split()) for s in replies for t in s),
    )
    json.dumps(labels.meta)


def test_per_step_sends_every_step_of_the_batch_in_one_call() -> None:
    replies = {"p0": [["Yes"] * 2] * 4, "p1": [["Yes"] * 2] * 2}
    annotator, policy = per_step(replies, votes=2)
    problems = {"p0": problem("p0"), "p1": problem("p1")}
    out = annotator.annotate(problems, [rollout("p0"), rollout("p1", steps=STEPS[:2])])
    assert [len(call) for call in policy.calls] == [6]
    assert [labels.first_error for labels in out] == [-1, -1]
    assert [labels.cost.completions for labels in out] == [8, 4]


def test_per_step_an_undecided_step_before_the_first_wrong_one_leaves_it_unknown() -> None:
    annotator, _ = per_step({"p0": [["hmm"] * 3, ["No"] * 3, ["Yes"] * 3, ["Yes"] * 3]})
    labels = label_one(annotator)
    assert labels.hard == (None, False, True, True)
    assert labels.values == (None, 0.0, 1.0, 1.0)
    assert labels.first_error is None
    assert "abstained" not in labels.meta


def test_per_step_with_no_readable_verdict_abstains() -> None:
    replies = [["hmm"] * 3, [r"\boxed{perhaps}"] * 3]
    annotator, _ = per_step({"p0": replies})
    labels = label_one(annotator, steps=STEPS[:2])
    assert (labels.hard, labels.values, labels.first_error) == ((None, None), (None, None), None)
    assert labels.meta["abstained"] == (
        "no step got a readable verdict: no \\boxed{} verdict, JSON verdict, or verdict word"
    )
    assert labels.meta["responses"] == replies


# ---------------------------------------------------------------- the config


TINY = {"kind": "transformers", "model": "/models/judge"}


def test_config_builds_the_judge_on_its_engine() -> None:
    built_for: list[Any] = []
    policy = ReplayPolicy(by_problem({"p0": [r"\boxed{0}"] * 2}))

    def engine(config: Any) -> ReplayPolicy:
        built_for.append(config)
        return policy

    config = JudgeConfig.model_validate(
        {"kind": "judge", "engine": TINY, "votes": 2, "sampling": {"max_tokens": 64}}
    )
    context = AnnotatorContext(
        policy=ReplayPolicy(by_problem({})), seed=5, isolation="bwrap", programs=lambda: None, engine=engine
    )
    annotator = config.build(context).annotator
    (labels,) = annotator.annotate({"p0": problem()}, [rollout()])
    assert built_for == [TransformersEngineConfig(model="/models/judge")]
    assert (labels.source, labels.first_error) == ("judge", 0)
    (request,) = policy.requests
    assert (request.n, request.sampling, request.seed) == (2, SAMPLING, judge_seed(5, "r-p0"))
    assert (
        JudgeConfig.model_validate({"kind": "judge", "engine": TINY, "name": "judge-b"}).source == "judge-b"
    )


def test_a_named_judge_draws_its_own_seeds() -> None:
    policy = ReplayPolicy(by_problem({"p0": [r"\boxed{0}"] * 3}))
    context = AnnotatorContext(
        policy=policy, seed=5, isolation="bwrap", programs=lambda: None, engine=lambda _: policy
    )
    JudgeConfig.model_validate({"kind": "judge", "engine": TINY, "name": "judge-b"}).build(
        context
    ).annotator.annotate({"p0": problem()}, [rollout()])
    assert policy.requests[0].seed == judge_seed(derive_seed(5, "annotator", "judge-b"), "r-p0")


def test_config_defaults_provenance_and_card() -> None:
    config = JudgeConfig.model_validate({"kind": "judge", "engine": TINY})
    assert (config.votes, config.mode, config.index_base, config.source) == (3, "critique", 0, "judge")
    assert (config.sampling.temperature, config.sampling.max_tokens) == (0.7, 1024)
    assert config.critique_template == CRITIQUE_TEMPLATE
    assert JudgeConfig.domains == frozenset({"math", "logic", "code"})
    assert JudgeConfig.continues_prefixes is False
    assert config.provenance("bwrap") == {
        "method": "judge (critique)",
        "tool": "transformers /models/judge",
        "isolation": "no code executed",
    }
    assert config.card_sentence() == (
        "LLM judge transformers /models/judge names the earliest wrong step of each solution (ProcessBench "
        "critique); majority of 3 sampled answer(s) at temperature 0.7 (ties: the earliest error)."
    )
    served = JudgeConfig.model_validate(
        {
            "kind": "judge",
            "mode": "per-step",
            "votes": 8,
            "engine": {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "qwen-72b"},
        }
    )
    assert isinstance(served.engine, OpenAIEngineConfig)
    assert served.provenance("bwrap")["tool"] == "openai qwen-72b at http://127.0.0.1:8000/v1"
    assert served.card_sentence() == (
        "LLM judge openai qwen-72b at http://127.0.0.1:8000/v1 judges each step given the steps before it; "
        "majority of 8 sampled answer(s) at temperature 0.7 (ties: the earliest error)."
    )
    pinned = JudgeConfig.model_validate({"kind": "judge", "engine": {**TINY, "revision": "abc123"}})
    assert pinned.provenance("none")["tool"] == "transformers /models/judge@abc123"


@pytest.mark.parametrize(
    ("update", "field", "message"),
    [
        ({"engine": None}, "engine", ""),
        ({"votes": 0}, "votes", "greater than or equal to 1"),
        ({"mode": "vote"}, "mode", "'critique' or 'per-step'"),
        ({"index_base": 2}, "index_base", "0 or 1"),
        (
            {"critique_template": "{problem}"},
            "critique_template",
            "critique_template: the critique template must contain {tagged_steps}",
        ),
        (
            {"step_template": "{problem} {stp}"},
            "step_template",
            "step_template: unknown placeholder {stp} (did you mean {step}?)",
        ),
        (
            {"votes": 3, "sampling": {"temperature": 0}},
            "",
            "votes: 3 votes at sampling.temperature 0 repeat one answer",
        ),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_field(update: dict[str, Any], field: str, message: str) -> None:
    from pydantic import ValidationError

    data: dict[str, Any] = {"kind": "judge", "engine": TINY, **update}
    if data["engine"] is None:
        del data["engine"]
    with pytest.raises(ValidationError) as err:
        JudgeConfig.model_validate(data)
    (error,) = err.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field
    assert message in error["msg"]


def test_one_vote_at_temperature_zero_is_allowed() -> None:
    config = JudgeConfig.model_validate(
        {"kind": "judge", "engine": TINY, "votes": 1, "sampling": {"temperature": 0}}
    )
    assert config.votes == 1
