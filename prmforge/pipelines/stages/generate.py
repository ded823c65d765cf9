"""generate: problems become segmented, graded rollouts (sampled by the engine, or imported as given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.pipelines.domains import CodeDomain, Domains, LogicDomain, MathDomain
from prmforge.pipelines.stage import Reject, Resources, RowResult, Stage
from prmforge.pipelines.stages.load import IMPORTED
from prmforge.policies.base import GenerationRequest
from prmforge.schemas.records import Problem, Rollout, SamplingParams, StepTruth, prefix_labels
from prmforge.schemas.seeds import derive_seed, short_hash


def rollout_id(problem_id: str, policy: str, sampling: SamplingParams, seed: int, index: int) -> str:
    return short_hash(problem_id, policy, sampling.as_dict(), seed, index)


class GenerateStage(Stage):
    """Samples ``rollouts_per_problem`` rollouts per problem; imported rollouts pass through, graded."""

    reads = ("problem",)
    writes = "rollout"
    resources = Resources(holds_engine=True)

    def __init__(
        self,
        rollouts_per_problem: int,
        sampling: SamplingParams,
        seed: int,
        max_steps: int,
        max_text_bytes: int,
        config: Mapping[str, Any],
    ) -> None:
        super().__init__("generate", ("load",), config)
        self.k = rollouts_per_problem
        self.sampling = sampling
        self.seed = seed
        self.max_steps = max_steps
        self.max_text_bytes = max_text_bytes
        self._env: Any = None
        self._domains: Domains | None = None

    def setup(self, env: Any) -> None:
        self._env = env
        self._domains = Domains(env.programs)

    def _domain(self, problem: Problem) -> MathDomain | LogicDomain | CodeDomain:
        if self._domains is None:
            raise RuntimeError("generate: setup() was not called")
        return self._domains(problem)

    def _unservable(self, problem: Problem) -> Reject | None:
        """Why the configured engine cannot solve ``problem`` (None: it can), before asking it."""
        if self.config.get("policy", {}).get("kind") != "simulated" or problem.domain != "math":
            return None
        if "plan" in problem.meta:
            return None
        why = problem.meta.get("plan_error")
        return Reject(
            "plan",
            "no reference plan: the simulated policy cannot solve it (it solves the built-in suites and "
            "GSM8K answers with calculator annotations); import written solutions with `kind: rollouts` "
            "to label them" + (f" (why no plan: {why})" if why else ""),
        )

    def process(self, batch: Sequence[Problem], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        refused = {p.problem_id: r for p in batch if IMPORTED not in p.meta and (r := self._unservable(p))}
        sampled = [p for p in batch if IMPORTED not in p.meta and p.problem_id not in refused]
        results = iter(self._sample(sampled)) if sampled else iter(())
        out: list[RowResult] = []
        for problem in batch:
            if problem.problem_id in refused:
                out.append(refused[problem.problem_id])
                continue
            rollouts = self._imported(problem) if IMPORTED in problem.meta else next(results)
            out.append(self._limited(rollouts))
        return out

    def _limited(self, rollouts: list[Rollout]) -> RowResult:
        for i, r in enumerate(rollouts):
            if len(r.steps) > self.max_steps:
                return Reject(
                    "steps",
                    f"rollout {i} has {len(r.steps)} steps, above limits.max_steps ({self.max_steps})",
                )
            size = len(r.text.encode("utf-8"))
            if size > self.max_text_bytes:
                return Reject(
                    "text",
                    f"rollout {i} is {size} bytes, above limits.max_answer_bytes ({self.max_text_bytes})",
                )
        return list(rollouts)

    def _sample(self, problems: Sequence[Problem]) -> list[list[Rollout]]:
        policy = self._env.policy
        seeds = [derive_seed(self.seed, "generate", p.problem_id) for p in problems]
        requests = [
            GenerationRequest(p, (), self.k, self.sampling, s) for p, s in zip(problems, seeds, strict=True)
        ]
        results = policy.generate(requests)
        produced = []
        for problem, result, req_seed in zip(problems, results, seeds, strict=True):
            domain = self._domain(problem)
            rollouts = []
            for i, completion in enumerate(result.completions):
                steps = domain.segment(problem, completion.text)
                final_answer, outcome = domain.grade(problem, completion.text)
                rollouts.append(
                    Rollout(
                        rollout_id=rollout_id(
                            problem.problem_id, policy.fingerprint, self.sampling, req_seed, i
                        ),
                        problem_id=problem.problem_id,
                        policy=policy.fingerprint,
                        sampling=self.sampling,
                        seed=req_seed,
                        text=completion.text,
                        steps=steps,
                        final_answer=final_answer,
                        outcome=outcome,
                        prompt_tokens=result.prompt_tokens,
                        completion_tokens=completion.tokens,
                        truth=domain.truth(problem, steps),
                    )
                )
            produced.append(rollouts)
        return produced

    def _imported(self, problem: Problem) -> list[Rollout]:
        data = problem.meta[IMPORTED]
        steps = tuple(str(s) for s in data["steps"])
        text = str(data["text"])
        final_answer: str | None = data.get("final_answer")
        outcome: bool | None = data.get("outcome")  # the file's own verdict, when it gives one
        if problem.gold:
            # Graded on the steps, not the raw text: segment tags (ки, <extra_0>) are not part of the answer.
            graded_answer, outcome = self._domain(problem).grade(problem, "\n\n".join(steps))
            final_answer = final_answer if final_answer is not None else graded_answer
        human = data.get("human_first_error")
        truth = None
        if human is not None:
            correct = data.get("human_step_correct")
            step_correct = (
                tuple(bool(c) for c in correct)
                if correct is not None
                else prefix_labels(int(human), len(steps))
            )
            truth = StepTruth(int(human), step_correct)
        policy = f"imported:{data.get('generator') or problem.source}"
        return [
            Rollout(
                rollout_id=short_hash(problem.problem_id, policy, str(data["key"])),
                problem_id=problem.problem_id,
                policy=policy,
                sampling=SamplingParams(),
                seed=0,
                text=text,
                steps=steps,
                final_answer=final_answer,
                outcome=outcome,
                prompt_tokens=0,
                completion_tokens=len(text.split()),
                truth=truth,
            )
        ]
