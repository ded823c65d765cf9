"""Which test files belong to the isolation suites whose skips fail under CI (see conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REQUIRED_IN_CI = (
    "verifiers/sandbox/",
    "verifiers/test_compile_test.py",
    "verifiers/test_c_forgery.py",
    "verifiers/test_lsp.py",
    "verifiers/test_lsp_reward.py",
    "ops/test_postgres.py",
    "reporting/",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def required_in_ci(path: Path) -> bool:
    """Whether a test file belongs to the isolation suites whose skips fail under CI."""
    try:
        rel = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return False
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in REQUIRED_IN_CI)
