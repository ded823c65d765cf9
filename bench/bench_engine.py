"""The transformers engine on the tiny local model, on CPU: where a Monte Carlo build's time goes, and
what batching a shard's MC requests buys.

1. A Monte Carlo build (N=4 completions after every step) of ProcessBench GSM8K rollouts, policy the
   tiny model (`prmforge tiny-model`): its wall time and the share of it spent inside the engine.
2. The MC requests of the first items, sent to the engine all at once (as the annotator does) and
   one request at a time, in the same run: the speed-up of batching.
3. The same build in shards of 4, one shard at a time per worker against two at once
   (`runner.shards_per_worker`: one shard's grading, labelling and commits run while the other's
   engine call generates), in the same run: wall times, the engine's busy share, the content hashes.
4. The same comparison with an engine that computes outside this process, as a GPU server does:
   a STAND-IN (no GPU or model server can run here), the simulated policy behind a fixed latency per
   engine call (``--latency``, 0.25 s), on a Monte Carlo build of 96 `arith` problems.

Not a test; the numbers go to the README. ``--items`` sets the rollouts (default 16).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from prmforge.annotators.mc import step_seed
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.eval_annotator import item_records, load_processbench
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.policies.hf_engine import TransformersPolicy
from prmforge.policies.simulated import SimulatedPolicy
from prmforge.policies.tiny_model import write_tiny_model
from prmforge.schemas.engines import TransformersEngineConfig
from prmforge.schemas.records import SamplingParams

PROCESSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench_gsm8k.json"
N, MAX_TOKENS = 4, 24


def build_share(
    model: Path, items: int, work: Path, *, shard_size: int = 8, per_worker: int = 1
) -> dict[str, float | str]:
    events: list[StageEvent] = []
    config = parse_config(
        {
            "name": "bench-engine",
            "inputs": [
                {"kind": "rollouts", "path": str(PROCESSBENCH), "preset": "processbench", "limit": items}
            ],
            "policy": {"kind": "transformers", "model": str(model), "device": "cpu"},
            "annotate": [
                {
                    "kind": "mc",
                    "n": N,
                    "last_step_from_outcome": False,
                    "sampling": {"max_tokens": MAX_TOKENS},
                }
            ],
            "runner": {
                "workers": 0,
                "shard_size": shard_size,
                "cache": False,
                "shards_per_worker": per_worker,
            },
            "limits": {"max_quarantine_share": 1.0},
        }
    )
    started = time.perf_counter()
    result = LocalRunner(events.append).run(config, work / f"build-{shard_size}-{per_worker}")
    wall = time.perf_counter() - started
    inside = sum(e.generate_seconds for e in events)
    return {
        "wall_s": round(wall, 2),
        "engine_s": round(inside, 2),
        "engine_share": round(inside / wall, 3),
        "content_hash": result.content_hash[:16],
    }


def overlap(model: Path, items: int, work: Path) -> dict[str, object]:
    one = build_share(model, items, work, shard_size=4, per_worker=1)
    two = build_share(model, items, work, shard_size=4, per_worker=2)
    return {
        "one_shard_at_a_time": one,
        "two_shards_at_once": two,
        "speedup": round(float(one["wall_s"]) / float(two["wall_s"]), 3),
        "same_content_hash": one["content_hash"] == two["content_hash"],
    }


def batching(model: Path, items: int) -> dict[str, float]:
    engine = TransformersPolicy(TransformersEngineConfig(model=str(model), device="cpu", batch_size=64))
    sampling = SamplingParams(temperature=0.7, top_p=1.0, max_tokens=MAX_TOKENS)
    requests = []
    for item in load_processbench(PROCESSBENCH, limit=items):
        problem, rollout = item_records(item)
        for step in range(len(rollout.steps)):
            seed = step_seed(0, rollout.rollout_id, step)
            requests.append(GenerationRequest(problem, rollout.steps[: step + 1], N, sampling, seed))
    engine.generate(requests[:2])  # warm up
    started = time.perf_counter()
    batched = engine.generate(requests)
    together = time.perf_counter() - started
    started = time.perf_counter()
    single = [engine.generate([r])[0] for r in requests]
    apart = time.perf_counter() - started
    same = sum(a.completions == b.completions for a, b in zip(batched, single, strict=True))
    return {
        "requests": len(requests),
        "sequences": len(requests) * N,
        "batched_s": round(together, 2),
        "one_at_a_time_s": round(apart, 2),
        "speedup": round(apart / together, 2),
        "identical_results": same,
    }


def remote_overlap(latency_s: float, work: Path) -> dict[str, object]:
    """Shards 1 vs 2 at once with the stand-in remote engine (see the module docstring, part 4)."""
    inner = SimulatedPolicy.generate

    def remote(policy: SimulatedPolicy, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        time.sleep(latency_s)  # the call is in flight elsewhere; this process waits without the GIL
        return inner(policy, requests)

    SimulatedPolicy.generate = remote  # type: ignore[method-assign]
    try:
        rows = {}
        for per_worker in (1, 2):
            config = parse_config(
                {
                    "name": "bench-remote",
                    "inputs": [{"kind": "arith", "count": 96, "min_steps": 3, "max_steps": 6}],
                    "annotate": [{"kind": "mc", "n": 8}],
                    "runner": {
                        "workers": 0,
                        "shard_size": 8,
                        "cache": False,
                        "shards_per_worker": per_worker,
                    },
                }
            )
            events: list[StageEvent] = []
            started = time.perf_counter()
            result = LocalRunner(events.append).run(config, work / f"remote-{per_worker}")
            wall = time.perf_counter() - started
            inside = sum(e.generate_seconds for e in events)
            rows[per_worker] = {
                "wall_s": round(wall, 2),
                "engine_busy_share": round(inside / wall, 3),
                "content_hash": result.content_hash[:16],
            }
    finally:
        SimulatedPolicy.generate = inner  # type: ignore[method-assign]
    return {
        "latency_s": latency_s,
        "one_shard_at_a_time": rows[1],
        "two_shards_at_once": rows[2],
        "speedup": round(float(rows[1]["wall_s"]) / float(rows[2]["wall_s"]), 3),
        "same_content_hash": rows[1]["content_hash"] == rows[2]["content_hash"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument(
        "--latency", type=float, default=0.25, help="the stand-in remote engine's seconds per call"
    )
    args = parser.parse_args()
    if not PROCESSBENCH.is_file():
        sys.exit(f"missing {PROCESSBENCH}")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny"
        write_tiny_model(model)
        report = {
            "mc_build": build_share(model, args.items, Path(tmp)),
            "batching": batching(model, max(args.items // 4, 2)),
            "overlap": overlap(model, args.items, Path(tmp)),
            "remote_engine_stand_in": remote_overlap(args.latency, Path(tmp)),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
