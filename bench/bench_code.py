"""Code-verifier benchmark: line-label precision and recall against exact truth, and cost per check.

Runs the compile-and-test verifier (sandboxed Python and gcc) and the
Lanser-CLI reward over pyright on rollouts of the built-in ``code`` suite
(reference copies, one injected bug, or truncations), then compares each
verifier's line labels with the truth.

Labels follow the PRM convention: a line is *invalid* from the first error
on. A verifier's first error is its first line whose check is invalid
(:attr:`Check.status`); lines whose check could not be made (UNAVAILABLE,
INFRA_ERROR) before that point are left out of precision and recall and
counted in ``coverage``. The positive class is "invalid". ``first_error_acc``
is the share of fully covered rollouts whose first error is exactly right;
``recall_by_kind`` is the share of buggy rollouts whose first error is found
exactly, per kind of injected error. ``ms_per_check`` is verifier wall time
divided by the number of line checks (outcomes are cached by program text,
so this is the amortised cost); ``ms_per_rollout`` the same per rollout;
``ms_per_execution`` (compile-test) is wall time per sandboxed program run,
compile included. Not a test.

    .venv/bin/python bench/bench_code.py [--problems 16] [--k 6] [--json out.json] [--skip-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prmforge.schemas.records import Problem, StepTruth
from prmforge.suites.code import apply_bug, code_tasks, generate_code_problems, generate_code_rollouts
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.verdict import Check

Rollout = tuple[Problem, tuple[str, ...], StepTruth]


def kind_of(problem: Problem, steps: Sequence[str]) -> str:
    """The kind of error injected into ``steps`` (``reference`` for an exact copy)."""
    reference = tuple(problem.meta["reference"])
    if tuple(steps) == reference:
        return "reference"
    if tuple(steps) == reference[: len(steps)]:
        return "truncated"
    task = next(t for t in code_tasks() if t.name == problem.meta["task"])
    return next(bug.kind for bug in task.bugs if apply_bug(reference, bug) == tuple(steps))


def make_rollouts(
    problems: int, k: int, seed: int, bug_rate: float, languages: Sequence[str]
) -> list[Rollout]:
    out: list[Rollout] = []
    for problem in generate_code_problems(problems, seed, languages):
        out += [
            (problem, steps, truth) for steps, truth in generate_code_rollouts(problem, k, seed, bug_rate)
        ]
    return out


def predicted_labels(checks: Sequence[Check]) -> list[bool | None]:
    """PRM-convention labels from checks: True = invalid; None where unknown before the first invalid."""
    labels: list[bool | None] = []
    failed = False
    for check in checks:
        failed = failed or check.status == "invalid"
        labels.append(True if failed else (None if check.status == "unchecked" else False))
    return labels


def evaluate(verifier: StepVerifier, rollouts: Sequence[Rollout]) -> dict[str, Any]:
    tp = fp = fn = tn = unknown = exact = covered = 0
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    seconds = 0.0
    checks_made = 0
    for problem, steps, truth in rollouts:
        began = time.perf_counter()
        checks = verifier.check_steps(problem, steps)
        seconds += time.perf_counter() - began
        checks_made += len(checks)
        verdicts.update(c.verdict.value for c in checks)
        predicted = predicted_labels(checks)
        gold = [not ok for ok in truth.prefix_labels()]
        for p, g in zip(predicted, gold, strict=True):
            if p is None:
                unknown += 1
            else:
                tp += p and g
                fp += p and not g
                fn += (not p) and g
                tn += (not p) and not g
        first = next((t for t, p in enumerate(predicted) if p), -1)
        if None not in predicted[: first + 1 if first >= 0 else len(predicted)]:
            covered += 1
            exact += first == truth.first_error
        kind = kind_of(problem, steps)
        total[kind] += 1
        found[kind] += first == truth.first_error
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    lines = tp + fp + fn + tn + unknown
    return {
        "rollouts": len(rollouts),
        "lines": lines,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if tp else 0.0,
        "coverage": (lines - unknown) / lines if lines else float("nan"),
        "first_error_acc": exact / covered if covered else float("nan"),
        "recall_by_kind": {k: found[k] / total[k] for k in sorted(total)},
        "verdicts": dict(sorted(verdicts.items())),
        "ms_per_check": 1000 * seconds / checks_made if checks_made else float("nan"),
        "ms_per_rollout": 1000 * seconds / len(rollouts) if rollouts else float("nan"),
        "seconds": seconds,
    }


def _table(results: dict[str, dict[str, Any]]) -> str:
    head = f"{'verifier':<28}{'rollouts':>9}{'lines':>7}{'P':>7}{'R':>7}{'F1':>7}"
    head += f"{'cover':>7}{'1st-err':>8}{'ms/chk':>8}"
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        rows.append(
            f"{name:<28}{r['rollouts']:>9}{r['lines']:>7}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
            f"{r['coverage']:>7.3f}{r['first_error_acc']:>8.3f}{r['ms_per_check']:>8.1f}"
        )
    for name, r in results.items():
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in r["recall_by_kind"].items())
        rows.append(f"{name}: exact first error by kind: {kinds}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bug-rate", type=float, default=0.7)
    parser.add_argument("--json", default=None, help="also write the JSON report here")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-lsp", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    if not args.skip_compile:
        from prmforge.verifiers.compile_test import CompileTestVerifier

        verifier = CompileTestVerifier()
        for language in ("python", "c"):
            rollouts = make_rollouts(args.problems, args.k, args.seed, args.bug_rate, (language,))
            runs_before = verifier.runs
            result = evaluate(verifier, rollouts)
            result["executions"] = verifier.runs - runs_before
            result["ms_per_execution"] = 1000 * result["seconds"] / max(1, result["executions"])
            results[f"compile-test/{language}"] = result
    if not args.skip_lsp:
        from prmforge.verifiers.lsp_reward import pyright_lsp_reward_verifier

        with pyright_lsp_reward_verifier() as lanser:
            rollouts = make_rollouts(args.problems, args.k, args.seed, args.bug_rate, ("python",))
            evaluate(lanser, rollouts[:2])  # warm the server up: startup is not a per-check cost
            results["lsp-reward-pyright/python"] = evaluate(lanser, rollouts)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": vars(args),
        "results": results,
    }
    print(_table(results))
    print(json.dumps(report, indent=2, sort_keys=True))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
    return report


if __name__ == "__main__":
    main()
