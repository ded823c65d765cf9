from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prmforge.pipelines.sources import default_gsm8k_path
from prmforge.schemas.config import BuildConfig, parse_config


def small_config(**overrides: Any) -> BuildConfig:
    """A build small enough for a unit test: 12 arith + 8 GSM8K problems, 2 rollouts each, N=4."""
    data: dict[str, Any] = {
        "name": "test",
        "seed": 11,
        "suites": [
            {"kind": "arith", "count": 12, "min_steps": 2, "max_steps": 5},
            {"kind": "gsm8k", "offset": 0, "limit": 8},
        ],
        "generate": {"rollouts_per_problem": 2},
        "annotate": {"mc": {"n": 4}},
        "runner": {"workers": 0, "shard_size": 5},
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data)


@pytest.fixture
def gsm8k_file() -> Path:
    path = default_gsm8k_path()
    if not path.is_file():
        pytest.fail(f"the shared GSM8K file is missing at {path}")
    return path
