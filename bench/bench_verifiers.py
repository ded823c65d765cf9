"""Tool-verifier benchmark: step-label precision and recall against exact truth, and cost per check.

- The equation checker on rollouts of the built-in ``arith`` and ``gsm8k``
  suites sampled from the simulated policy (exact per-step truth), and on
  ProcessBench GSM8K (human first-error labels).
- The Z3 entailment verifier on rollouts of the ``logic`` suite (exact local
  truth by finite models).

The positive class is "invalid": ``precision`` is the share of FAIL steps whose
truth is incorrect, ``recall`` the share of incorrect steps that got FAIL.
``pass_precision`` is the share of PASS steps whose truth is correct;
``coverage`` the share of steps with PASS or FAIL. ``ms_per_check`` is the
verifier's wall time per step. Not a test.

    .venv/bin/python bench/bench_verifiers.py [--problems 60] [--k 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prmforge.pipelines.eval_annotator import build_annotator, evaluate_annotator
from prmforge.pipelines.sources import default_gsm8k_path
from prmforge.policies.base import GenerationRequest, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, SamplingParams, StepTruth
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.gsm8k import load_gsm8k
from prmforge.suites.logic import generate_logic_problems, generate_logic_rollouts
from prmforge.suites.truth import exact_truth
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.equations import EquationVerifier
from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier

PROCESSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench_gsm8k.json"

Sample = tuple[Problem, tuple[str, ...], StepTruth]


def simulated_rollouts(problems: Sequence[Problem], k: int, seed: int, error_rate: float) -> list[Sample]:
    policy = SimulatedPolicy(SimulatedPolicyParams(error_rate=error_rate), seed=seed)
    sampling = SamplingParams(temperature=0.7)
    requests = [GenerationRequest(p, (), k, sampling, seed) for p in problems]
    out = []
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        for completion in result.completions:
            steps = split_steps(completion.text)
            out.append((problem, steps, exact_truth(problem, steps)))
    return out


def score(verifier: StepVerifier, samples: Sequence[Sample]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    seconds = 0.0
    first_error_hits = first_error_known = 0
    for problem, steps, truth in samples:
        started = time.perf_counter()
        checks = verifier.check_steps(problem, steps)
        seconds += time.perf_counter() - started
        for check, good in zip(checks, truth.step_correct, strict=True):
            verdicts[check.verdict.value] += 1
            status = check.status
            counts[f"{status}_{'correct' if good else 'incorrect'}"] += 1
        flagged = next((t for t, c in enumerate(checks) if c.status == "invalid"), -1)
        if flagged >= 0:
            first_error_known += 1
            first_error_hits += flagged == truth.first_error
    n_steps = sum(len(s[1]) for s in samples)
    fail = counts["invalid_correct"] + counts["invalid_incorrect"]
    passed = counts["valid_correct"] + counts["valid_incorrect"]
    incorrect = counts["invalid_incorrect"] + counts["valid_incorrect"] + counts["unchecked_incorrect"]
    return {
        "rollouts": len(samples),
        "steps": n_steps,
        "incorrect_steps": incorrect,
        "verdicts": dict(sorted(verdicts.items())),
        "fail": fail,
        "precision": _ratio(counts["invalid_incorrect"], fail),
        "recall": _ratio(counts["invalid_incorrect"], incorrect),
        "pass_precision": _ratio(counts["valid_correct"], passed),
        "coverage": _ratio(fail + passed, n_steps),
        "first_flag_is_first_error": _ratio(first_error_hits, first_error_known),
        "ms_per_check": _ratio(1000 * seconds, n_steps),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def processbench(limit: int | None) -> dict[str, Any]:
    report = evaluate_annotator(PROCESSBENCH, build_annotator("equations"), limit=limit)
    return {
        "items": report.items,
        "steps": report.steps,
        "steps_flagged": report.steps_flagged,
        "flagged_exact": report.flagged_exact,
        "flagged_after": report.flagged_after,
        "flagged_before": report.flagged_before,
        "flagged_in_correct": report.flagged_in_correct,
        "step_flag_precision": report.step_flag_precision,
        "coverage": report.coverage,
        "f1_first_error": report.score.f1,
        "f1_first_flag": report.flag_score.f1,
        "first_flag_error_acc": report.flag_score.error_acc,
        "first_flag_correct_acc": report.flag_score.correct_acc,
        "ms_per_check": _ratio(1000 * report.cost.seconds, report.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.15)
    parser.add_argument("--processbench-limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version()}
    equations = EquationVerifier()
    arith = generate_arith_problems(args.problems, seed=args.seed)
    results["equations/arith"] = score(
        equations, simulated_rollouts(arith, args.k, args.seed, args.error_rate)
    )
    gsm8k, _ = load_gsm8k(default_gsm8k_path())
    gsm8k = gsm8k[: args.problems]
    results["equations/gsm8k"] = score(
        equations, simulated_rollouts(gsm8k, args.k, args.seed, args.error_rate)
    )
    if PROCESSBENCH.is_file():
        results["equations/processbench"] = processbench(args.processbench_limit)
    logic = generate_logic_problems(args.problems, seed=args.seed)
    samples = [
        (p, steps, truth)
        for p in logic
        for steps, truth in generate_logic_rollouts(p, args.k, args.seed, 0.1)
    ]
    with Z3EntailmentVerifier() as z3:
        results["z3/logic"] = score(z3, samples)
        results["z3/logic"]["z3_version"] = z3.worker.version

    columns = (
        "rollouts",
        "steps",
        "fail",
        "precision",
        "recall",
        "pass_precision",
        "coverage",
        "ms_per_check",
    )
    print(f"{'bench':24}" + "".join(f"{c:>15}" for c in columns))
    for name, row in results.items():
        if not isinstance(row, dict) or "rollouts" not in row:
            continue
        cells = [row[c] for c in columns]
        print(f"{name:24}" + "".join(f"{v:>15.3f}" if isinstance(v, float) else f"{v:>15}" for v in cells))
    if "equations/processbench" in results:
        pb = results["equations/processbench"]
        print(
            f"processbench: {pb['steps_flagged']} of {pb['steps']} steps flagged, "
            f"{pb['flagged_exact']} at the labelled first error (precision {pb['step_flag_precision']:.3f}), "
            f"{pb['flagged_after']} after it, {pb['flagged_before']} before it, "
            f"{pb['flagged_in_correct']} in correct solutions; "
            f"coverage {pb['coverage']:.3f}; F1 first_error {pb['f1_first_error']:.3f}, "
            f"first flag {pb['f1_first_flag']:.3f}; {pb['ms_per_check']:.3f} ms/step"
        )
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
