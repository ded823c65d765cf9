"""Policies for the `logic` and `code` suites, and a router that sends each request to its suite's policy.

The scripted policy samples whole solutions from the suites' own error
generators (invalid inferences in derivations, bugs and truncations in
programs). It does not continue a prefix, so Monte Carlo estimation needs
the simulated policy of the math suites; tool verifiers label these suites.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from prmforge.policies.base import STEP_SEPARATOR, Completion, GenerationRequest, GenerationResult, Policy
from prmforge.schemas.records import Problem
from prmforge.suites.code import generate_code_rollouts
from prmforge.suites.logic import generate_logic_rollouts

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
    """The generator seed of one request: stable across processes (sha256, not ``hash``)."""
    return int.from_bytes(hashlib.sha256(f"{policy_seed}|{request_seed}".encode()).digest()[:8], "big")


def _tokens(text: str) -> int:
    return len(text.split())


class ScriptedPolicy:
    """Samples `logic` derivations and `code` programs with exact, seeded errors."""

    def __init__(
        self, problems: Iterable[Problem], params: ScriptedParams | None = None, seed: int = 0
    ) -> None:
        self.params = params or ScriptedParams()
        self.seed = seed
        self._by_question: dict[str, Problem] = {}
        for problem in problems:
            if problem.domain not in SCRIPTED_DOMAINS:
                raise ValueError(
                    f"problem {problem.problem_id}: the scripted policy serves logic and code only"
                )
            self._by_question[problem.question] = problem
        blob = json.dumps({"params": asdict(self.params), "seed": seed}, sort_keys=True).encode()
        self._fingerprint = "scripted-v1:" + hashlib.sha256(blob).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            problem = self._by_question.get(request.question)
            if problem is None:
                raise ValueError(f"the scripted policy does not know the question {request.question[:60]!r}")
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


class RoutedPolicy:
    """One policy per question: each batch is split by route, sent once per policy, and put back in order.

    The fingerprint names every member, whichever questions a given batch (or shard) holds, so
    rollout ids and cache keys do not depend on how problems were packed into shards.
    """

    def __init__(self, members: Sequence[Policy], routes: Mapping[str, Policy]) -> None:
        self._routes = dict(routes)
        strays = {p.fingerprint for p in self._routes.values()} - {p.fingerprint for p in members}
        if strays:
            raise ValueError(f"routes name policies that are not members: {sorted(strays)}")
        self._fingerprint = "+".join(sorted({p.fingerprint for p in members}))

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        groups: dict[int, tuple[Policy, list[int]]] = {}
        for index, request in enumerate(requests):
            policy = self._routes.get(request.question)
            if policy is None:
                raise ValueError(f"no policy serves the question {request.question[:60]!r}")
            groups.setdefault(id(policy), (policy, []))[1].append(index)
        out: list[GenerationResult | None] = [None] * len(requests)
        for policy, indices in groups.values():
            for index, result in zip(indices, policy.generate([requests[i] for i in indices]), strict=True):
                out[index] = result
        return [r for r in out if r is not None]
