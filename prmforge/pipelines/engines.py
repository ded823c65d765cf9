"""What a worker builds once from the configuration alone: the policy engine and the shared verifiers.

Which engines exist depends on the configuration, never on a shard's problems,
so rollout ids and cache keys do not depend on how problems were packed into
shards, and an engine can be a long-lived actor of any runner.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prmforge.pipelines.overlap import Baton
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.policies.router import DomainRouter
from prmforge.policies.scripted import ScriptedParams, ScriptedPolicy
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.engines import SimulatedPolicyConfig
from prmforge.schemas.errors import ConfigError

MATH = "math"
SCRIPTED = ("logic", "code")


def check_policy(config: Any) -> None:
    """A bad engine setting (the policy's or a judge's) is the build's error, raised before any row."""
    if isinstance(config.policy, SimulatedPolicyConfig):
        simulated_params(config.policy)
    else:
        _check_engine(config.policy, "policy")
    for position, spec in enumerate(config.annotate):
        if getattr(spec, "engine", None) is not None:
            _check_engine(spec.engine, f"annotate.{position}.engine")


def _check_engine(engine: Any, where: str) -> None:
    model = Path(engine.model)
    is_path = engine.model.startswith(("/", "./", "../", "~"))
    if engine.kind != "openai" and is_path and not model.expanduser().exists():
        raise ConfigError(f"{where}.model: {engine.model} does not exist (a folder, or a Hub model name)")
    api_key_env = getattr(engine, "api_key_env", None)
    if api_key_env is not None and api_key_env not in os.environ:
        raise ConfigError(f"{where}.api_key_env: the environment variable {api_key_env} is not set")


def simulated_params(config: SimulatedPolicyConfig) -> SimulatedPolicyParams:
    known = {f.name for f in dataclasses.fields(SimulatedPolicyParams)}
    unknown = sorted(set(config.params) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(f"policy.params: unknown parameter(s) {unknown}{hint} allowed: {sorted(known)}")
    try:
        return SimulatedPolicyParams(**config.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"policy.params: {err}") from None


class TimedPolicy:
    """Wraps a policy to count calls and measure the wall time spent inside ``generate``, one call at a
    time through the worker's :class:`~prmforge.pipelines.overlap.Baton` (which a shard thread
    lets go of for the call). ``seconds`` is every thread's; :meth:`thread_seconds` the caller's."""

    def __init__(self, inner: Policy, baton: Baton | None = None) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0
        self.requests = 0
        self._baton = baton if baton is not None else Baton()
        self._local = threading.local()

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def thread_seconds(self) -> float:
        """Seconds the calling thread spent inside ``generate``."""
        return float(getattr(self._local, "seconds", 0.0))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        with self._baton.engine():
            start = time.perf_counter()
            self.calls += 1
            self.requests += len(requests)
            try:
                return self.inner.generate(requests)
            finally:
                spent = time.perf_counter() - start
                self.seconds += spent
                self._local.seconds = self.thread_seconds() + spent


def build_policy(config: Any, domains: frozenset[str], cache: RequestCache | None) -> Policy:
    """The configured engines for the domains the inputs give, each behind the request cache."""

    def cached(policy: Policy) -> Policy:
        return CachedPolicy(policy, cache) if cache is not None else policy

    if not isinstance(config.policy, SimulatedPolicyConfig):  # a model serves every domain it is given
        from prmforge.policies.factory import build_engine

        return cached(build_engine(config.policy, workers=config.runner.workers))
    routes: dict[str, Policy] = {}
    if MATH in domains:
        routes[MATH] = cached(SimulatedPolicy(simulated_params(config.policy), seed=config.seed))
    if domains & set(SCRIPTED):
        knobs = config.policy.scripted
        script = cached(
            ScriptedPolicy(ScriptedParams(knobs.logic_error_rate, knobs.code_bug_rate), config.seed)
        )
        routes.update({d: script for d in SCRIPTED if d in domains})
    members = {id(p): p for p in routes.values()}
    if len(members) == 1:
        return next(iter(members.values()))
    return DomainRouter(routes)


class WorkerEnv:
    """One worker's engines, built on first use and closed at the end of the worker's life."""

    def __init__(self, config: Any, domains: frozenset[str], cache_path: Path | None) -> None:
        self.config = config
        self.domains = domains
        self.cache_path = cache_path
        self._policy: TimedPolicy | None = None
        self._cache: RequestCache | None = None
        self._programs: Any = None
        self._pool: Any = None
        self._engines: dict[str, TimedPolicy] = {}
        self.baton = Baton()  # shared by the shard threads (pipelines/overlap.py) and every engine call

    @property
    def policy(self) -> TimedPolicy:
        if self._policy is None:
            policy = build_policy(self.config, self.domains, self._request_cache())
            self._policy = TimedPolicy(policy, self.baton)
        return self._policy

    def _request_cache(self) -> RequestCache | None:
        """The worker's one connection to the build's request cache, opened on first use."""
        if self._cache is None and self.cache_path is not None:
            self._cache = RequestCache(self.cache_path)
        return self._cache

    def generate_seconds(self) -> float:
        """Seconds the calling thread spent inside every engine of this worker (the policy's and the
        judges'): a shard thread's own, when several shards run at once."""
        own = self._policy.thread_seconds() if self._policy is not None else 0.0
        return own + sum(engine.thread_seconds() for engine in self._engines.values())

    def engine(self, config: Any) -> Policy:
        """The model engine ``config`` names (a judge's), built once per worker behind the request cache;
        one that equals the policy's configuration is the policy itself (one model in memory)."""
        if config == self.config.policy:
            return self.policy
        key = config.model_dump_json()
        if key not in self._engines:
            from prmforge.policies.factory import build_engine

            engine = build_engine(config, workers=self.config.runner.workers)
            cache = self._request_cache()
            self._engines[key] = TimedPolicy(CachedPolicy(engine, cache) if cache else engine, self.baton)
        return self._engines[key]

    def programs(self) -> Any:
        """One compile-and-test verifier per worker: the outcome grader and the annotator share its cache.

        With ``sandbox.warm`` (the default) it runs every program in one warm jail of this worker
        (proved clean after each program, replaced when it is not); otherwise a fresh jail per run.
        """
        if self._programs is None:
            from prmforge.verifiers.compile_test import CompileTestVerifier
            from prmforge.verifiers.sandbox import PythonSandbox, Sandbox, SandboxPool

            isolation = self.config.sandbox.isolation
            weaker = isolation != "bwrap"
            if self.config.sandbox.warm:  # gcc, the C driver and Python programs share one warm jail
                self._pool = SandboxPool(size=1, isolation=isolation, allow_weaker=weaker)
                self._programs = CompileTestVerifier(self._pool, self._pool)
            else:
                self._programs = CompileTestVerifier(
                    Sandbox(isolation=isolation, allow_weaker=weaker),
                    PythonSandbox(isolation=isolation, allow_weaker=weaker),
                )
        return self._programs

    def close(self) -> None:
        """Release every engine (an HTTP engine's loop thread), the sandbox pool and the cache."""
        for timed in (self._policy, *self._engines.values()):
            engine = timed.inner if timed is not None else None
            engine = engine.inner if isinstance(engine, CachedPolicy) else engine
            closer = getattr(engine, "close", None)
            if callable(closer):
                closer()
        self._policy = None
        self._engines.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
