"""Spine benchmark: labelled steps per second through the local runner, MC with N=8 on `arith`.

Reports, in one run, for 0 workers (in-process) and 2 worker processes:
wall time, labelled steps per second, the share of the shard workers' time
spent inside the policy's ``generate``, and the framework's own time per
labelled step outside ``generate`` (segmentation, grading, fusion, Arrow
encoding, commits, global stages): the overhead a real GPU engine would see on
top of its own generation time. The request cache is off so every completion is
really generated. Not a test: numbers go to the README.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.stats import summarize

CONFIG = {
    "name": "bench-spine",
    "seed": 1,
    "inputs": [{"kind": "arith", "count": 192, "min_steps": 3, "max_steps": 8}],
    "generate": {"rollouts_per_problem": 4},
    "annotate": [{"kind": "mc", "n": 8}],
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
    labelled = sum(e.counts.rows_out for e in fresh if e.stage == "annotate-mc")
    return {
        "workers": workers,
        "wall_s": round(wall, 3),
        "rollouts": labelled,
        "labelled_steps": steps,
        "steps_per_s": round(steps / wall, 1),
        "generate_share": round(generate_seconds / stage_seconds, 3),
        # Worker time outside generate, per labelled step (in-process: the whole wall time counts).
        "overhead_ms_per_step": round(1000 * (stage_seconds - generate_seconds) / steps, 3),
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
    print(
        f"{'workers':>8} {'wall s':>8} {'rollouts':>9} {'steps':>7} {'steps/s':>9} {'in generate':>12} "
        f"{'outside ms/step':>16}"
    )
    for r in rows:
        print(
            f"{r['workers']:>8} {r['wall_s']:>8} {r['rollouts']:>9} {r['labelled_steps']:>7} "
            f"{r['steps_per_s']:>9} {r['generate_share']:>12.1%} {r['overhead_ms_per_step']:>16}"
        )
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "spine.json").write_text(json.dumps({"machine": machine(), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
