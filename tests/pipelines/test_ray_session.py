"""A local Ray session (the Ray runner with no cluster address) leaves its process as it found it.

Separate from test_runner_ray.py, whose module keeps one Ray running for its builds: here no Ray
is running when the test starts. A session that left its token or Ray's ``RAY_AUTH_MODE=token``
in the environment, or Ray's cached view of them, made every later Ray in the same process
without authentication lose its actors (``ActorDiedError``): a user's notebook or a scheduler
that runs two builds, or a test worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from prmforge.pipelines.runners.ray_session import ray_session  # noqa: E402 - only with the ray extra

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@ray.remote(num_cpus=0)
class Echo:
    def double(self, x: int) -> int:
        return 2 * x


def test_a_local_session_restores_the_authentication_environment_for_a_later_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not ray.is_initialized()
    tmp = Path(tempfile.mkdtemp(prefix="pfray-", dir="/tmp"))  # Ray's socket paths are short
    try:
        monkeypatch.setenv("RAY_TMPDIR", str(tmp))
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        for var in AUTH_VARS:
            monkeypatch.delenv(var, raising=False)
        with ray_session(None):
            assert ray.is_initialized()
            assert len(os.environ["RAY_AUTH_TOKEN"]) == 64  # the session's own token
            assert ray.get(Echo.remote().double.remote(4)) == 8
        assert not ray.is_initialized()
        assert {v: os.environ.get(v) for v in AUTH_VARS} == dict.fromkeys(AUTH_VARS)
        # A Ray without authentication, started afterwards in this process, keeps its actors.
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            num_cpus=1,
            include_dashboard=False,
            _temp_dir=str(tmp / "later"),
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        try:
            assert ray.get(Echo.remote().double.remote(21), timeout=60) == 42
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
