"""The policy of the `logic` and `code` suites.

The scripted policy samples whole solutions from the suites' own error
generators (invalid inferences in derivations, bugs and truncations in
programs). It does not continue a prefix, so Monte Carlo estimation needs
the simulated policy of the math suites; tool verifiers label these suites.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from prmforge.policies.base import STEP_SEPARATOR, Completion, GenerationRequest, GenerationResult
from prmforge.policies.router import DomainRouter
from prmforge.schemas.records import Problem
from prmforge.schemas.seeds import derive_seed
from prmforge.suites.code import generate_code_rollouts
from prmforge.suites.logic import generate_logic_rollouts

__all__ = [
    "SCRIPTED_DOMAINS",
    "DomainRouter",
    "ScriptedParams",
    "ScriptedPolicy",
    "join_steps",
    "scripted_seed",
]

SCRIPTED_DOMAINS = frozenset({"logic", "code"})


@dataclass(frozen=True, slots=True)
class ScriptedParams:
    """``logic_error_rate``: chance that a derivation step is replaced by one of its invalid inferences;
    ``code_bug_rate``: chance that a program carries one injected bug or is truncated."""

    logic_error_rate: float = 0.2
    code_bug_rate: float = 0.5


def join_steps(domain: str, steps: Sequence[str]) -> str:
    """A solution's text: programs are lines, derivations are blank-line separated steps."""
    return "\n".join(steps) + "\n" if domain == "code" else STEP_SEPARATOR.join(steps)


def scripted_seed(policy_seed: int, request_seed: int) -> int:
    """The generator seed of one request (:func:`~prmforge.schemas.seeds.derive_seed`, 63 bits)."""
    return derive_seed("scripted", policy_seed, request_seed)


def _tokens(text: str) -> int:
    return len(text.split())


class ScriptedPolicy:
    """Samples `logic` derivations and `code` programs with exact, seeded errors.

    An engine built from its parameters alone: each request's ``problem`` says what to sample
    (``problem.meta`` holds the derivation plan or the code task).
    """

    def __init__(self, params: ScriptedParams | None = None, seed: int = 0) -> None:
        self.params = params or ScriptedParams()
        self.seed = seed
        blob = json.dumps({"params": asdict(self.params), "seed": seed}, sort_keys=True).encode()
        self._fingerprint = "scripted-v1:" + hashlib.sha256(blob).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            problem = request.problem
            _check_servable(problem)
            if request.prefix:
                raise ValueError(
                    f"problem {problem.problem_id}: the scripted policy samples whole solutions and cannot "
                    "continue a prefix (Monte Carlo estimation needs a policy that can)"
                )
            seed = scripted_seed(self.seed, request.seed)
            if problem.domain == "logic":
                sampled = generate_logic_rollouts(problem, request.n, seed, self.params.logic_error_rate)
            else:
                sampled = generate_code_rollouts(problem, request.n, seed, self.params.code_bug_rate)
            completions = tuple(
                Completion(text, _tokens(text))
                for text in (join_steps(problem.domain, s) for s, _ in sampled)
            )
            results.append(GenerationResult(completions, _tokens(request.prompt)))
        return results


def _check_servable(problem: Problem) -> None:
    """ValueError naming the problem when the scripted policy cannot sample it."""
    pid = problem.problem_id
    if problem.domain not in SCRIPTED_DOMAINS:
        raise ValueError(
            f"problem {pid}: the scripted policy serves logic and code only, not {problem.domain!r}"
        )
    # A code problem without its task raises CodeSpecError (a ValueError naming it) when sampled.
    if problem.domain == "logic":
        plan = problem.meta.get("plan")
        if not isinstance(plan, list) or not all(isinstance(e, Mapping) and "errors" in e for e in plan):
            raise ValueError(f"problem {pid}: a logic problem needs its derivation plan in meta['plan']")
