from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from prmforge.pipelines import tables
from prmforge.pipelines.config import BuildConfig, parse_config
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.sources import default_gsm8k_path
from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.policies.simulated import SimulatedPolicy

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PROCESSBENCH = SHARED / "processbench_gsm8k.json"


def init_local_ray(**options: Any) -> None:
    """``ray.init`` of a local Ray for a test (no dashboard), through the runner's own start: once more
    when its raylet missed Ray's fixed 30 s registration wait on a loaded machine."""
    import uuid

    from prmforge.pipelines.runners.ray_reaper import SESSION_VAR
    from prmforge.pipelines.runners.ray_session import start_local_ray

    session = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SESSION_VAR, session)  # the processes of a failed first start are found by it
        start_local_ray({"log_to_driver": False, "logging_level": logging.WARNING, **options}, session)


def small_config(**overrides: Any) -> BuildConfig:
    """A build small enough for a unit test: 12 arith + 8 GSM8K problems, 2 rollouts each, N=4."""
    data: dict[str, Any] = {
        "name": "test",
        "seed": 11,
        "inputs": [
            {"kind": "arith", "count": 12, "min_steps": 2, "max_steps": 5},
            {"kind": "gsm8k", "offset": 0, "limit": 8},
        ],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 4}],
        "runner": {"workers": 0, "shard_size": 5},
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data)


def committed(root: Path, prefix: str, kind: str) -> list[Any]:
    """The records of every file the manifest lists under ``prefix`` (``"stages/annotate-mc/"``), in order."""
    build = BuildDir(root)
    out: list[Any] = []
    for f in Manifest.read(root).under(prefix):
        out.extend(tables.decode(kind, build.read_table(f.entry)))
    return out


def gsm8k_lines(path: Path, count: int, start: int = 0) -> Path:
    """Write ``count`` lines of the shared GSM8K file (from line ``start``) to ``path``; returns it."""
    source = default_gsm8k_path()
    if not source.is_file():
        pytest.fail(f"the shared GSM8K file is missing at {source}")
    with source.open("rb") as fh:
        lines = [line for _, line in zip(range(start + count), fh, strict=False)][start:]
    path.write_bytes(b"".join(lines))
    return path


def processbench_items(count: int) -> list[dict[str, Any]]:
    """The first ``count`` items of the shared ProcessBench GSM8K file, read at test time."""
    if not PROCESSBENCH.is_file():
        pytest.fail(f"the shared ProcessBench GSM8K file is missing at {PROCESSBENCH}")
    items: list[dict[str, Any]] = json.loads(PROCESSBENCH.read_text(encoding="utf-8"))
    return items[:count]


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


class PolicyCalls:
    """Counts calls of the simulated policy's ``generate`` (in this process: run builds with workers=0)."""

    def __init__(self) -> None:
        self.calls = 0
        self.requests = 0

    def reset(self) -> None:
        self.calls = self.requests = 0


@pytest.fixture
def policy_calls(monkeypatch: pytest.MonkeyPatch) -> PolicyCalls:
    counter = PolicyCalls()
    original: Callable[[SimulatedPolicy, Sequence[GenerationRequest]], list[GenerationResult]] = (
        SimulatedPolicy.generate
    )

    def counting(self: SimulatedPolicy, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        counter.calls += 1
        counter.requests += len(requests)
        return original(self, requests)

    monkeypatch.setattr(SimulatedPolicy, "generate", counting)
    return counter


@pytest.fixture
def gsm8k_file() -> Path:
    path = default_gsm8k_path()
    if not path.is_file():
        pytest.fail(f"the shared GSM8K file is missing at {path}")
    return path
