"""Explicit composition: the concrete policy, grader and annotators a configuration names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from prmforge.annotators.base import Annotator
from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.tool import ToolAnnotator
from prmforge.policies.base import Policy
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.policies.scripted import SCRIPTED_DOMAINS, RoutedPolicy, ScriptedParams, ScriptedPolicy
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.config import MATH_KINDS, BuildConfig, PolicyConfig
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Problem
from prmforge.verifiers.answer import AnswerGrader
from prmforge.verifiers.compile_test import CompileTestVerifier
from prmforge.verifiers.equations import EquationVerifier
from prmforge.verifiers.lanser import pyright_lanser_verifier
from prmforge.verifiers.sandbox import PythonSandbox, Sandbox
from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier, Z3Settings


def simulated_params(config: PolicyConfig) -> SimulatedPolicyParams:
    known = {f.name for f in dataclasses.fields(SimulatedPolicyParams)}
    unknown = sorted(set(config.params) - known)
    if unknown:
        raise ConfigError(f"policy.params: unknown parameter(s) {unknown}; allowed: {sorted(known)}")
    try:
        return SimulatedPolicyParams(**config.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"policy.params: {err}") from None


def build_policy(config: BuildConfig, problems: Sequence[Problem], cache: RequestCache | None) -> Policy:
    """The configured policies, each behind the request cache when one is given.

    Math problems go to the simulated policy, `logic` and `code` problems to the scripted one; a
    configuration with both kinds of suite gets a router. Which policies exist depends on the
    configuration, never on one shard's problems, so rollout ids do not depend on shard packing.
    """

    def cached(policy: Policy) -> Policy:
        return CachedPolicy(policy, cache) if cache is not None else policy

    kinds = {suite.kind for suite in config.suites}
    math = [p for p in problems if p.domain not in SCRIPTED_DOMAINS]
    scripted = [p for p in problems if p.domain in SCRIPTED_DOMAINS]
    simulated = cached(SimulatedPolicy(math, simulated_params(config.policy), seed=config.seed))
    if kinds <= MATH_KINDS:
        return simulated
    knobs = ScriptedParams(config.policy.scripted.logic_error_rate, config.policy.scripted.code_bug_rate)
    script = cached(ScriptedPolicy(scripted, knobs, seed=config.seed))
    if not kinds & MATH_KINDS:
        return script
    routes = {p.question: simulated for p in math} | {p.question: script for p in scripted}
    return RoutedPolicy([simulated, script], routes)


class ClosingAnnotator:
    """An annotator and the resources it holds (a Z3 worker, a language server), closed after the shard."""

    def __init__(self, annotator: Annotator, close: Callable[[], None] = lambda: None) -> None:
        self.annotator = annotator
        self.close = close


def build_annotator(
    config: BuildConfig, policy: Policy, compile_test: Callable[[], CompileTestVerifier]
) -> ClosingAnnotator:
    """The labelling method ``annotate.method`` names; ``compile_test`` gives the shard's verifier."""
    if config.annotate.method == "mc":
        return ClosingAnnotator(build_mc_annotator(config, policy))
    return build_tool_annotator(
        config.annotate.method, compile_test=compile_test, use_bwrap=config.annotate.isolation == "bwrap"
    )


def build_tool_annotator(
    method: str,
    *,
    z3_settings: Z3Settings | None = None,
    compile_test: Callable[[], CompileTestVerifier] = CompileTestVerifier,
    use_bwrap: bool = True,
) -> ClosingAnnotator:
    """A tool-verifier annotator by name: equations, z3, compile-test or lanser."""
    if method == "equations":
        return ClosingAnnotator(ToolAnnotator(EquationVerifier(), "equations"))
    if method == "z3":
        z3 = Z3EntailmentVerifier(z3_settings)
        return ClosingAnnotator(ToolAnnotator(z3, "z3"), z3.close)
    if method == "compile-test":
        return ClosingAnnotator(ToolAnnotator(compile_test(), "compile-test"))
    if method == "lanser":
        lanser = pyright_lanser_verifier(use_bwrap=use_bwrap)
        return ClosingAnnotator(ToolAnnotator(lanser, "lanser"), lanser.close)
    raise ValueError(f"unknown annotator {method!r}: choose equations, z3, compile-test or lanser")


def verification_provenance(config: BuildConfig) -> dict[str, str]:
    """What checked the steps, and how isolated it was: recorded in the manifest and the dataset card."""
    method = config.annotate.method
    if method == "mc":
        return {"method": "mc", "tool": "none", "isolation": "no code executed"}
    if method == "equations":
        return {"method": method, "tool": "exact rational arithmetic", "isolation": "no code executed"}
    if method == "z3":
        import z3

        return {
            "method": method,
            "tool": f"z3 {z3.get_version_string()}",
            "isolation": "child process with an address-space rlimit, deterministic rlimit, hard kill",
        }
    if method == "compile-test":
        return {
            "method": method,
            "tool": "gcc + python3 in the sandbox",
            "isolation": sandbox(config).isolation,
        }
    if config.annotate.isolation == "bwrap":
        isolation = "bwrap (all namespaces, no network, uid 65534, read-only system) + prlimit"
    else:
        isolation = "cleared environment + rlimits only (opted in)"
    return {"method": method, "tool": "pyright language server", "isolation": isolation}


def sandbox(config: BuildConfig) -> Sandbox:
    """A fresh-jail sandbox at the configured isolation; weaker than bwrap only by explicit opt-in."""
    isolation = config.annotate.isolation
    return Sandbox(isolation=isolation, allow_weaker=isolation != "bwrap")


def build_compile_test(config: BuildConfig) -> CompileTestVerifier:
    """Compile-and-test in the sandbox at the configured isolation (also grades code outcomes)."""
    isolation = config.annotate.isolation
    weaker = isolation != "bwrap"
    return CompileTestVerifier(sandbox(config), PythonSandbox(isolation=isolation, allow_weaker=weaker))


def build_mc_annotator(config: BuildConfig, policy: Policy) -> MonteCarloAnnotator:
    mc = config.annotate.mc
    return MonteCarloAnnotator(
        policy=policy,
        grader=AnswerGrader(),
        n=mc.n,
        sampling=mc.sampling.to_params(),
        seed=config.seed,
        early_stop=mc.early_stop,
        last_step_from_outcome=mc.last_step_from_outcome,
    )
