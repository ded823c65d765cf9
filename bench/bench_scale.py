"""Scale benchmark: wall time and peak memory of a build of 1,000 against 10,000 arith problems.

Each build runs in its own in-process runner (``workers: 0``) in a fresh
subprocess, so its peak RSS (``ru_maxrss``) is the driver's own: planning keeps
row ranges, not rows; stages hold one shard; the global stages hold one shard
and one hash per row. Goal: peak memory at most 1.2x for 10x the data. Labels
come from the equation checker (no Monte Carlo), so the numbers are the
framework's, not the policy's. Not a test: numbers go to the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_spine import machine

CHILD = """
import json, resource, sys, time
from pathlib import Path
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.local import LocalRunner
count, out = int(sys.argv[1]), Path(sys.argv[2])
config = parse_config({
    "name": "bench-scale", "seed": 1,
    "inputs": [{"kind": "arith", "count": count, "min_steps": 2, "max_steps": 6}],
    "generate": {"rollouts_per_problem": 2},
    "annotate": [{"kind": "equations"}],
    "split": {"validation": 0.1, "dedup": True},
    "runner": {"shard_size": 64, "cache": False, "workers": 0},
})
start = time.perf_counter()
result = LocalRunner().run(config, out)
wall = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "wall_s": round(wall, 2), "peak_mib": round(peak_kib / 1024, 1),
                  "rows": sum(result.manifest.splits.values())}))
"""


def _child(count: int, out: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(count), str(out)], capture_output=True, text=True, check=True
    )
    row: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def run(count: int) -> dict[str, float]:
    """A build, then a no-op resume of it in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        built = _child(count, Path(tmp) / "b")
        resumed = _child(count, Path(tmp) / "b")
    return {**built, "resume_s": resumed["wall_s"], "resume_peak_mib": resumed["peak_mib"]}


def main() -> None:
    small, large = run(1_000), run(10_000)
    print(f"machine: {machine()}")
    print(f"{'problems':>9} {'rows':>7} {'wall s':>8} {'peak MiB':>9} {'resume s':>9} {'resume MiB':>11}")
    for r in (small, large):
        print(
            f"{r['count']:>9} {r['rows']:>7} {r['wall_s']:>8} {r['peak_mib']:>9} "
            f"{r['resume_s']:>9} {r['resume_peak_mib']:>11}"
        )
    ratio = large["peak_mib"] / small["peak_mib"]
    print(f"peak memory ratio for 10x the data: {ratio:.2f} (goal <= 1.2)")
    print(f"wall time ratio: {large['wall_s'] / small['wall_s']:.2f}")
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    summary = {"machine": machine(), "runs": [small, large], "peak_ratio": round(ratio, 3)}
    (out / "scale.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
