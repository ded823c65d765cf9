"""Ray for one build: a cluster's address, or a local Ray started for the build and stopped after.

A local Ray gets a token made for it (held in this process's environment, never written to
``~/.ray``), no dashboard, and processes that die with the driver (:mod:`ray_reaper` kills those Ray's
own fate sharing leaves behind). When the session ends this process is as it was: the
authentication variables restored and Ray's cached view of them dropped, so a later Ray in the same
process (a notebook, a scheduler running two builds) is not handed a stale token.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from prmforge.pipelines.runners import ray_reaper
from prmforge.pipelines.runners.ray_reaper import SESSION_VAR
from prmforge.schemas.errors import ConfigError

REAP_S = 10.0  # a bound on the reaper's last round after ray.shutdown
START_ATTEMPTS = 2  # a local Ray whose raylet did not register in time is started once more
STARTUP_TIMEOUT = "timed out during startup"  # Ray's message for that (ray/_private/node.py)
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the block: the cluster at ``address``, or a local Ray started here and shut down after.

    A Ray this process already initialised is used as it is (and left running). A local Ray gets a
    token made for it (held in this process's environment, never written to ``~/.ray``) unless the
    environment already chooses Ray's authentication, no dashboard, and the processes Ray starts die
    with this one (a reaper kills what would outlive it). Signal handlers are kept: Ray's own SIGTERM
    handler would exit without the interruption message.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own convention
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    reaper: subprocess.Popen[bytes] | None = None
    auth = {v: os.environ.get(v) for v in _AUTH_VARS}  # ray.init writes RAY_AUTH_MODE here too
    try:
        if address is None:
            if not any(v in os.environ for v in _AUTH_VARS):
                os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # Ray turns token mode on for it
            reaper, session = _start_reaper()
            os.environ[SESSION_VAR] = session  # inherited by exactly the processes ray.init starts
            try:
                start_local_ray(options, session)
            finally:
                os.environ.pop(SESSION_VAR, None)
        else:
            try:
                ray.init(address=address, **options)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise ConfigError(
                    f"runner.ray.address: cannot connect to the Ray cluster at {address!r} "
                    f"({first_line(err)})"
                ) from None
    except BaseException:
        _end_session(reaper, auth)
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in saved.items():
                signal.signal(s, handler)
    try:
        yield
    finally:
        _end_session(reaper, auth)


def start_local_ray(options: dict[str, Any], session: str) -> None:
    """``ray.init`` of a local Ray, once more when its raylet never registered with the GCS (Ray's
    fixed 30 s wait, which a loaded machine can miss). Ray raises that inside its node's start, so
    ``ray.shutdown`` knows no node to stop: the processes the failed attempt started (tagged with
    ``session``: :data:`SESSION_VAR` must be set to it in the environment) are killed here before the
    second."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            with _quiet_logger(_AUTH_LOGGER):  # "token authentication is enabled": the default
                ray.init(include_dashboard=False, **options)
            return
        except Exception as err:  # Ray raises a bare Exception for this
            if attempt == START_ATTEMPTS or STARTUP_TIMEOUT not in str(err):
                raise
            ray.shutdown()
            ray_reaper.reap(session, quiet_rounds=3, max_s=REAP_S)


def _end_session(reaper: subprocess.Popen[bytes] | None, auth: dict[str, str | None]) -> None:
    """Shut Ray down and leave this process as it was: the authentication variables as they were
    before (the token made for the session, and the mode Ray wrote, leave the environment) and
    Ray's cached view of them dropped. A later Ray in this process, one without authentication,
    would otherwise still present the token and see its workers die."""
    ray.shutdown()
    _stop_reaper(reaper)
    if any(os.environ.get(v) != value for v, value in auth.items()):
        for v, value in auth.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
        _reset_auth_state()


def _reset_auth_state() -> None:
    """Ray caches the authentication mode and token per process; make it read the environment again."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # as Ray's test helpers

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _start_reaper() -> tuple[subprocess.Popen[bytes], str]:
    """The process that kills this local Ray's processes when the driver is gone (see ray_reaper)."""
    session = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != SESSION_VAR}
    command = [sys.executable, "-I", str(Path(ray_reaper.__file__)), session]
    return subprocess.Popen(command, stdin=subprocess.PIPE, env=env), session


def _stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    """After ``ray.shutdown``: the reaper kills what lingers, then exits."""
    if reaper is None:
        return
    if reaper.stdin is not None:
        reaper.stdin.close()
    try:
        reaper.wait(timeout=REAP_S)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def first_line(err: BaseException) -> str:
    """The error's type and the first line of its message (Ray's messages run to pages)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
