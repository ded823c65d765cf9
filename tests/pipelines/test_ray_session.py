"""A local Ray session (the Ray runner with no cluster address) leaves its process as it found it.

Separate from test_runner_ray.py, whose module keeps one Ray running for its builds: here no Ray
is running when the test starts. A session that left its token or Ray's ``RAY_AUTH_MODE=token``
in the environment, or Ray's cached view of them, made every later Ray in the same process
without authentication lose its actors (``ActorDiedError``): a user's notebook or a scheduler
that runs two builds, or a test worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import init_local_ray  # noqa: E402

from prmforge.pipelines.runners.ray_session import ray_session  # noqa: E402 - only with the ray extra

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _no_ray_settings(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """A local Ray under ``tmp`` (Ray's socket paths are short), no usage stats, and no address or
    authentication setting of the caller's environment."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)


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
        _no_ray_settings(monkeypatch, tmp)
        with ray_session(None):
            assert ray.is_initialized()
            assert len(os.environ["RAY_AUTH_TOKEN"]) == 64  # the session's own token
            assert ray.get(Echo.remote().double.remote(4)) == 8
        assert not ray.is_initialized()
        assert {v: os.environ.get(v) for v in AUTH_VARS} == dict.fromkeys(AUTH_VARS)
        # A Ray without authentication, started afterwards in this process, keeps its actors.
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        init_local_ray(num_cpus=1, _temp_dir=str(tmp / "later"))
        try:
            assert ray.get(Echo.remote().double.remote(21), timeout=60) == 42
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_local_ray_whose_raylet_did_not_register_is_started_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray's fixed 30 s wait for the raylet can run out on a loaded machine (seen in CI): the first
    ray.init starts a process (tagged with the session, as Ray's are) and raises Ray's own startup
    exception (a stand-in for that failure, which cannot be caused on demand); the session kills what
    the first attempt started and starts a real Ray; any other error is raised at once."""
    import prmforge.pipelines.runners.ray_session as session

    assert not ray.is_initialized()
    tmp = Path(tempfile.mkdtemp(prefix="pfray-", dir="/tmp"))
    real_init = ray.init
    calls: list[str] = []
    leftovers: list[subprocess.Popen[bytes]] = []
    at_second: list[int | None] = []

    def flaky_init(*args: object, **kwargs: object) -> object:
        calls.append("init")
        if len(calls) == 1:  # a first attempt leaves a process of its own, tagged as Ray's are
            leftovers.append(subprocess.Popen(["sleep", "120"]))
            raise Exception(
                "The current node timed out during startup. This could happen because some of the "
                "raylet failed to startup or the GCS has become overloaded."
            )
        at_second.append(leftovers[0].poll())  # the first attempt's process, when the second starts
        return real_init(*args, **kwargs)

    try:
        _no_ray_settings(monkeypatch, tmp)
        monkeypatch.setattr(session.ray, "init", flaky_init)
        with ray_session(None):
            assert at_second == [-signal.SIGKILL]  # killed before the second start
            assert ray.get(Echo.remote().double.remote(5), timeout=60) == 10
        assert (calls, ray.is_initialized()) == (["init", "init"], False)
        calls.clear()

        def broken_init(*args: object, **kwargs: object) -> object:
            calls.append("init")
            raise Exception("something else")

        monkeypatch.setattr(session.ray, "init", broken_init)
        with pytest.raises(Exception, match="something else"), ray_session(None):
            pass
        assert calls == ["init"]
        assert {v: os.environ.get(v) for v in AUTH_VARS} == dict.fromkeys(AUTH_VARS)
    finally:
        for proc in leftovers:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
