"""Simulated-policy benchmark: the policy time of generate plus MC rollouts on `arith`.

For each of 200 `arith` problems, one request for 4 rollouts (as the generate stage sends it), then
for every step of every rollout one MC request for n=8 completions after that step's prefix (as the
MC annotator sends them, without early stop). Only ``SimulatedPolicy.generate`` is timed, in CPU time
(a busy machine disturbs it less); the best and the median of ``--repeats`` runs are printed, with the
numbers of completions and of expression evaluations (equal work gives equal counts).

``--dump FILE`` writes the problems as JSON lines and ``--problems FILE`` reads them back, so two
versions of the code can be timed on the same problems. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from prmforge.annotators.mc import step_seed
from prmforge.policies.base import GenerationRequest, split_steps
from prmforge.policies.simulated import SimulatedPolicy
from prmforge.schemas.records import Problem, SamplingParams
from prmforge.suites.arith import generate_arith_problems

PROBLEMS, ROLLOUTS, MC_N, SEED = 200, 4, 8, 1


def _problems(path: str | None) -> list[Problem]:
    if path is None:
        return generate_arith_problems(PROBLEMS, seed=SEED, min_steps=3, max_steps=8)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [Problem(**row) for row in rows]


def run_once(problems: list[Problem]) -> tuple[float, int, int]:
    """``(CPU seconds inside generate, completions, expression evaluations)`` of one pass."""
    policy = SimulatedPolicy(seed=SEED)
    sampling = SamplingParams()
    first = [GenerationRequest(p, (), ROLLOUTS, sampling, 1000 + i) for i, p in enumerate(problems)]
    start = time.process_time()
    results = policy.generate(first)
    seconds = time.process_time() - start
    mc: list[GenerationRequest] = []
    for problem, result in zip(problems, results, strict=True):
        for i, completion in enumerate(result.completions):
            steps = split_steps(completion.text)
            rid = f"{problem.problem_id}/{i}"
            mc.extend(
                GenerationRequest(problem, steps[: t + 1], MC_N, sampling, step_seed(SEED, rid, t))
                for t in range(len(steps))
            )
    start = time.process_time()
    more = policy.generate(mc)
    seconds += time.process_time() - start
    return seconds, sum(len(r.completions) for r in [*results, *more]), policy.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--problems", help="read the problems from this JSON-lines file")
    parser.add_argument("--dump", help="write the problems to this JSON-lines file and exit")
    args = parser.parse_args()
    problems = _problems(args.problems)
    if args.dump:
        rows = [json.dumps({**vars_of(p)}) for p in problems]
        Path(args.dump).write_text("\n".join(rows) + "\n")
        return
    runs = [run_once(problems) for _ in range(args.repeats)]
    times = [s for s, _, _ in runs]
    print(
        json.dumps(
            {
                "problems": len(problems),
                "completions": runs[0][1],
                "evaluations": runs[0][2],
                "best_s": round(min(times), 3),
                "median_s": round(statistics.median(times), 3),
            }
        )
    )


def vars_of(problem: Problem) -> dict[str, object]:
    return {
        "problem_id": problem.problem_id,
        "domain": problem.domain,
        "question": problem.question,
        "gold": problem.gold,
        "source": problem.source,
        "meta": dict(problem.meta),
    }


if __name__ == "__main__":
    main()
