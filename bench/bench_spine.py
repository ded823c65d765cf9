"""Spine benchmark: labelled steps per second through the local runner, MC with N=8 on `arith`.

Reports, in one run, for 0 workers (in-process) and 2 worker processes:
wall time, labelled steps per second, and the share of the shard workers'
time spent inside the policy's ``generate`` (the rest is segmentation,
grading, Arrow encoding and commits). The request cache is off so every
completion is really generated. Not a test: numbers go to the README.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from prmforge.pipelines.local import LocalRunner
from prmforge.pipelines.shard import StageEvent
from prmforge.pipelines.stats import summarize
from prmforge.schemas.config import parse_config

CONFIG = {
    "name": "bench-spine",
    "seed": 1,
    "suites": [{"kind": "arith", "count": 192, "min_steps": 3, "max_steps": 8}],
    "generate": {"rollouts_per_problem": 4},
    "annotate": {"mc": {"n": 8}},
    "runner": {"shard_size": 8, "cache": False},
}


def run(workers: int) -> dict[str, float]:
    events: list[StageEvent] = []
    config = parse_config(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        LocalRunner(events.append).run(config, Path(tmp) / "b", workers=workers)
        wall = time.perf_counter() - start
        steps = summarize(Path(tmp) / "b")["steps"]
    fresh = [e for e in events if not e.resumed]
    stage_seconds = sum(e.seconds for e in fresh)
    generate_seconds = sum(e.generate_seconds for e in fresh)
    return {
        "workers": workers,
        "wall_s": round(wall, 3),
        "rollouts": sum(e.counts.rows_out for e in fresh if e.stage == "annotate-mc"),
        "labelled_steps": steps,
        "steps_per_s": round(steps / wall, 1),
        "generate_share": round(generate_seconds / stage_seconds, 3),
    }


def machine() -> str:
    """CPU model, core count and Python version, for the README's performance table."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    rows = [run(0), run(2)]
    print(f"machine: {machine()}")
    print(f"{'workers':>8} {'wall s':>8} {'rollouts':>9} {'steps':>7} {'steps/s':>9} {'in generate':>12}")
    for r in rows:
        print(
            f"{r['workers']:>8} {r['wall_s']:>8} {r['rollouts']:>9} {r['labelled_steps']:>7} "
            f"{r['steps_per_s']:>9} {r['generate_share']:>12.1%}"
        )
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "spine.json").write_text(json.dumps({"machine": machine(), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
