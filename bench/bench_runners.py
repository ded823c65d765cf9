"""Runner benchmark: the Ray runner's scaling on a CPU-bound verifier build, and what Ray and Beam cost
against the local runner on the quickstart build, in one run.

1. Scaling: a build of ``arith`` problems with long solutions whose only label source is the equation
   checker (every stated equality checked exactly; CPU-bound Python, no Monte Carlo), on Ray with 1
   worker against 2 (goal: >= 1.7x on 2 cores), the local runner's process pool beside it for
   reference. Wall time of ``run()`` with Ray already up (the actors' start-up is included); 1 and 2
   workers take turns ``--pairs`` times and each row is the median (the walls seen are in its note).
2. Overhead: the quickstart build (``configs/quickstart.yaml``, 2 workers) on the local runner, on Ray
   with the local Ray started and stopped by the runner (what ``prmforge build --runner ray`` costs),
   on Ray already up, and on Beam (``BeamRunner``; its row is skipped with the reason when it does not
   import); each as a ratio of the local runner's wall time.

Every build of one config must give one content hash; the bench checks it. The request cache is off
so every completion is really generated. Results: a table on stdout and ``.bench/runners.json``. Not a
test; the numbers go to the README.

    .venv/bin/python bench/bench_runners.py [--problems 480] [--repeat 1] [--pairs 3]
        [--part all|overhead|scaling]

Each row records the 1-minute load average when it started: on a shared machine the other users'
work takes cores from the "2 workers" rows, and the ratios say so only with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_spine import machine

from prmforge.pipelines.config import BuildConfig, load_config, parse_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.pipelines.runners.shard import StageEvent

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
Sink = Callable[[StageEvent], None]
Run = Callable[[BuildConfig, Path, int, Sink], BuildResult]


def verifier_config(problems: int) -> BuildConfig:
    return parse_config(
        {
            "name": "bench-runners",
            "seed": 3,
            "inputs": [{"kind": "arith", "count": problems, "min_steps": 8, "max_steps": 12}],
            "generate": {"rollouts_per_problem": 8},
            "annotate": [{"kind": "equations"}],
            "runner": {"shard_size": 16, "cache": False},
            "limits": {"max_quarantine_share": 1.0},
        }
    )


def quickstart_config() -> BuildConfig:
    config = load_config(QUICKSTART)
    runner = config.runner.model_copy(update={"cache": False})
    return config.model_copy(update={"runner": runner})


def local(config: BuildConfig, out: Path, workers: int, on_event: Sink) -> BuildResult:
    return LocalRunner(on_event).run(config, out, workers=workers)


def ray_runner(config: BuildConfig, out: Path, workers: int, on_event: Sink) -> BuildResult:
    from prmforge.pipelines.runners.ray import RayRunner

    return RayRunner(on_event).run(config, out, workers=workers)


def beam_runner() -> tuple[Run | None, str]:
    try:
        from prmforge.pipelines.runners.beam import BeamRunner
    except Exception as err:  # being written by another engineer: report why, do not fail the bench
        return None, f"does not import yet ({type(err).__name__}: {err})"

    def run(config: BuildConfig, out: Path, workers: int, on_event: Sink) -> BuildResult:
        return BeamRunner(on_event).run(config, out, workers=workers)

    return run, ""


def timed(run: Run, config: BuildConfig, workers: int, repeat: int) -> tuple[float, str, float]:
    """The best wall time of ``repeat`` fresh builds, the content hash they all gave, and that build's
    busy/wall: the seconds its shards' stages ran, summed over workers, over the wall time (how many
    stages ran at once on average, whatever the cores they got)."""
    best: tuple[float, float] | None = None
    hashes = set()
    for _ in range(repeat):
        events: list[StageEvent] = []
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run(config, Path(tmp) / "b", workers, events.append)
            wall = time.perf_counter() - start
        hashes.add(result.content_hash)
        busy = sum(e.seconds for e in events if e.shard >= 0 and not e.resumed)
        if best is None or wall < best[0]:
            best = (wall, busy / wall)
    if len(hashes) != 1 or best is None:
        raise SystemExit(f"one config gave {len(hashes)} content hashes: {sorted(hashes)}")
    return best[0], hashes.pop(), round(best[1], 2)


def scaling(run: Run, config: BuildConfig, pairs: int) -> dict[int, tuple[float, str, float, str]]:
    """1 worker, then 2, ``pairs`` times in turn: per worker count the median wall time, the content
    hash, the median busy/wall and the walls seen. Taking turns gives both counts the same share of
    whatever else the machine runs; the median of a few pairs moves much less than one pair (on this
    shared machine one pair's ratio ranged over 1.44-1.78x)."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, list[float]] = {1: [], 2: []}
    hashes = set()
    for _ in range(pairs):
        for workers in (1, 2):
            wall, digest, per_wall = timed(run, config, workers, 1)
            walls[workers].append(wall)
            busy[workers].append(per_wall)
            hashes.add(digest)
    if len(hashes) != 1:
        raise SystemExit(f"one config gave {len(hashes)} content hashes: {sorted(hashes)}")
    digest = hashes.pop()
    return {
        w: (statistics.median(walls[w]), digest, statistics.median(busy[w]),
            "walls " + ", ".join(f"{x:.1f}" for x in walls[w]))
        for w in (1, 2)
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=1, help="overhead rows: the best of this many builds")
    parser.add_argument("--pairs", type=int, default=3, help="scaling: 1 then 2 workers, this many times")
    parser.add_argument("--part", choices=("all", "overhead", "scaling"), default="all")
    parser.add_argument("--scaling-runners", default="local,ray", help="scaling: these runners, in turn")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_tmp = tempfile.mkdtemp(prefix="pfbench-", dir="/tmp")  # short: Ray's socket paths
    os.environ.setdefault("RAY_TMPDIR", ray_tmp)  # Ray's sessions and logs, removed at the end
    try:
        run_all(args)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def run_all(args: argparse.Namespace) -> None:

    rows: list[dict[str, Any]] = []

    def row(
        part: str,
        runner: str,
        workers: int,
        wall: float | None,
        digest: str,
        busy: float | None,
        note: str = "",
    ) -> None:
        rows.append({"part": part, "runner": runner, "workers": workers, "wall_s": wall, "hash": digest,
                     "busy_per_wall": busy, "load": loads.pop(0), "note": note})  # fmt: skip

    loads: list[float] = []

    def measure(run: Run, config: BuildConfig, workers: int) -> tuple[float, str, float]:
        loads.append(round(os.getloadavg()[0], 2))
        return timed(run, config, workers, args.repeat)

    quick = quickstart_config()
    if args.part in ("all", "overhead"):
        row("overhead", "local", 2, *measure(local, quick, 2))
        row("overhead", "ray (starts a local Ray)", 2, *measure(ray_runner, quick, 2))
    from prmforge.pipelines.runners.ray_session import ray_session

    # The runner's own local Ray (its token in this process's environment, never in ~/.ray; its
    # processes die with this one), kept up across the rows below: each build finds Ray initialised.
    with ray_session(None):
        if args.part in ("all", "overhead"):
            row("overhead", "ray (Ray already up)", 2, *measure(ray_runner, quick, 2))
            beam, why = beam_runner()
            loads.append(round(os.getloadavg()[0], 2))
            if beam is None:
                row("overhead", "beam", 2, None, "", None, why)
            else:
                try:
                    row("overhead", "beam", 2, *timed(beam, quick, 2, args.repeat))
                except Exception as err:  # a runner being written may fail: say so
                    row("overhead", "beam", 2, None, "", None, f"failed ({type(err).__name__}: {err})")
        if args.part in ("all", "scaling"):
            verifier = verifier_config(args.problems)
            chosen = args.scaling_runners.split(",")
            for name, run in [(n, r) for n, r in (("local", local), ("ray", ray_runner)) if n in chosen]:
                load = round(os.getloadavg()[0], 2)  # when this runner's turns began
                for workers, (wall, digest, busy, note) in scaling(run, verifier, args.pairs).items():
                    loads.append(load)
                    row("scaling", name, workers, wall, digest, busy, note)
    report(rows, args.problems)


def report(rows: list[dict[str, Any]], problems: int) -> None:
    def wall_of(part: str, runner: str, workers: int) -> float:
        return next(
            float(r["wall_s"])
            for r in rows
            if (r["part"], r["runner"], r["workers"]) == (part, runner, workers)
        )

    parts = {r["part"] for r in rows}
    base = wall_of("overhead", "local", 2) if "overhead" in parts else 1.0
    for r in rows:
        if r["wall_s"] is None:
            r["ratio"] = None
        elif r["part"] == "overhead":
            r["ratio"] = round(r["wall_s"] / base, 2)  # x the local runner's wall time
        else:
            r["ratio"] = round(wall_of("scaling", r["runner"], 1) / r["wall_s"], 2)  # speed-up over 1 worker
    for part in parts:
        hashes = {r["hash"] for r in rows if r["part"] == part and r["hash"]}
        if len(hashes) != 1:
            raise SystemExit(f"{part}: the runners disagree on the content hash: {sorted(hashes)}")
    print(f"machine: {machine()}")
    print(
        f"scaling build: {problems} arith problems x 8 rollouts, equations only; overhead build: quickstart"
    )
    head = f"{'part':<9} {'runner':<26} {'workers':>7}"
    print(f"{head} {'wall s':>8} {'ratio':>6} {'busy/wall':>9} {'load':>5}  note")
    for r in rows:
        wall = "-" if r["wall_s"] is None else f"{r['wall_s']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        head = f"{r['part']:<9} {r['runner']:<26} {r['workers']:>7}"
        busy = "-" if r["busy_per_wall"] is None else f"{r['busy_per_wall']:.2f}"
        print(f"{head} {wall:>8} {ratio:>6} {busy:>9} {r['load']:>5}  {r['note']}")
    print("ratio: overhead = wall / local's wall (lower is better); scaling = 1 worker's wall / this wall")
    print("busy/wall: stage seconds summed over workers / wall; load: 1-minute load average at the start")
    if any((r["part"], r["runner"]) == ("scaling", "ray") for r in rows):
        speedup = wall_of("scaling", "ray", 1) / wall_of("scaling", "ray", 2)
        print(f"Ray speed-up, 2 workers over 1: {speedup:.2f}x (goal >= 1.7x on 2 free cores)")
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    summary = {"machine": machine(), "problems": problems, "rows": rows}
    (out / "runners.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
