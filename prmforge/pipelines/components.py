"""Explicit composition: the concrete policy, grader and annotators a configuration names."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.policies.base import Policy
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.config import BuildConfig, PolicyConfig
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Problem
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer


def simulated_params(config: PolicyConfig) -> SimulatedPolicyParams:
    known = {f.name for f in dataclasses.fields(SimulatedPolicyParams)}
    unknown = sorted(set(config.params) - known)
    if unknown:
        raise ConfigError(f"policy.params: unknown parameter(s) {unknown}; allowed: {sorted(known)}")
    try:
        return SimulatedPolicyParams(**config.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"policy.params: {err}") from None


def build_policy(config: BuildConfig, problems: Sequence[Problem], cache: RequestCache | None) -> Policy:
    """The configured policy, behind the request cache when one is given."""
    policy: Policy = SimulatedPolicy(problems, simulated_params(config.policy), seed=config.seed)
    if cache is not None:
        policy = CachedPolicy(policy, cache)
    return policy


def build_mc_annotator(config: BuildConfig, policy: Policy) -> MonteCarloAnnotator:
    mc = config.annotate.mc
    return MonteCarloAnnotator(
        policy=policy,
        grader=AnswerGrader(),
        n=mc.n,
        sampling=mc.sampling.to_params(),
        seed=config.seed,
        early_stop=mc.early_stop,
        last_step_from_outcome=mc.last_step_from_outcome,
    )


def grade_text(text: str, gold: str) -> tuple[str | None, bool | None]:
    """The final answer a text states and whether it equals the gold answer.

    A rollout that states no final answer is graded wrong, not unknown: the gold answer is known.
    """
    answer = extract_final_answer(text)
    if answer is None:
        return None, False
    return answer, AnswerGrader().grade(text, gold)
