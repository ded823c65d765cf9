"""Lanser-CLI process reward from language-server diagnostics, per line of a ``code`` rollout.

The reward (Lanser-CLI §5 / App. E; METHODS.md §2(j)) is

    r_t = alpha * (D_{t-1} - D_t) + beta * S_t - gamma * (1 - alpha_t)

with the paper's weights ``(alpha, beta, gamma) = (0.5, 0.4, 0.1)``.
:func:`process_reward` and :func:`process_rewards` are pure functions of the
per-step inputs. The paper's Example 2 prints -0.438 for ``S_t = 0``; the
formula gives -0.038, and this module follows the formula.

How the inputs are read off a ``code`` rollout (steps are lines), by
:class:`LspRewardVerifier`:

- **State t** is the program after the first t+1 line edits applied to the
  reference: the rollout's lines 0..t followed by the reference's lines
  t+1.. (the same completed prefix that
  :mod:`prmforge.verifiers.compile_test` executes); the last state is the
  rollout's program as written. State -1 is the reference itself.
- **D_t** is the number of error and warning diagnostics that the language
  server (pyright) reports for state t. Every diagnostic in the document
  counts: an edit that breaks a later reference line (a renamed variable) is
  relevant to it.
- **S_t** is 1 when the edit is safe to apply: the step is a single line
  without control characters and state t is within the server's document
  caps; the server itself runs in a jail (see
  :mod:`prmforge.verifiers.lsp.servers`).
- **alpha_t** is the selector confidence: the target of edit t is line t,
  located by position, so alpha_t = 1 when the reference has a line t and 0
  when the edit lies past the reference's end (nothing to anchor it to).

A step's :class:`~prmforge.verifiers.verdict.Check` is PASS when
``r_t >= threshold`` (default 0.2: one more diagnostic, or an unsafe edit,
fails; an unchanged count with a safe edit scores 0.4 - 0.1 * (1 - alpha_t)
>= 0.3 and passes), FAIL below it, and UNAVAILABLE when the server could not
give D_t or D_{t-1} (timeout, crash, size cap), or when no server is
configured for the problem's language (C, by default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from prmforge.languages.code_program import CodeSpecError, assemble_program, code_spec_of, completed_prefix
from prmforge.schemas.records import Problem
from prmforge.verifiers.lsp import DiagnosticsResult, LanguageServer, document_problem, pyright_spec
from prmforge.verifiers.verdict import Check, Verdict

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WEIGHTS",
    "LspRewardStep",
    "LspRewardVerifier",
    "RewardWeights",
    "edit_is_safe",
    "process_reward",
    "process_rewards",
    "pyright_lsp_reward_verifier",
]

DEFAULT_THRESHOLD: Final = 0.2
_TOOL: Final = "lanser-reward"


@dataclass(frozen=True, slots=True)
class RewardWeights:
    """``(alpha, beta, gamma)``: weights of the diagnostic delta, the safety bit and the ambiguity penalty."""

    alpha: float = 0.5
    beta: float = 0.4
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise ValueError(f"weights must be >= 0, got {self}")

    def as_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


DEFAULT_WEIGHTS: Final = RewardWeights()


def process_reward(
    d_prev: int, d_t: int, safe: bool, alpha_t: float, weights: RewardWeights = DEFAULT_WEIGHTS
) -> float:
    """``alpha (D_{t-1} - D_t) + beta S_t - gamma (1 - alpha_t)``.

    >>> round(process_reward(1, 0, True, 0.72), 3)  # the paper's bundle example
    0.872
    """
    if d_prev < 0 or d_t < 0:
        raise ValueError(f"diagnostic counts must be >= 0, got {d_prev} and {d_t}")
    if not 0.0 <= alpha_t <= 1.0:
        raise ValueError(f"alpha_t must be in [0, 1], got {alpha_t}")
    return (
        weights.alpha * (d_prev - d_t)
        + weights.beta * (1.0 if safe else 0.0)
        - weights.gamma * (1.0 - alpha_t)
    )


def process_rewards(
    counts: Sequence[int],
    safety: Sequence[bool],
    alphas: Sequence[float],
    *,
    initial: int,
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> list[float]:
    """r_t for every step: ``counts[t]`` is D_t, ``initial`` is D_{-1} (the count before the first edit)."""
    if not len(counts) == len(safety) == len(alphas):
        raise ValueError(
            f"need one count, safety bit and alpha per step: {len(counts)}/{len(safety)}/{len(alphas)}"
        )
    previous = [initial, *counts[:-1]]
    return [
        process_reward(p, d, s, a, weights)
        for p, d, s, a in zip(previous, counts, safety, alphas, strict=True)
    ]


def edit_is_safe(step: str) -> bool:
    """S_t's edit part: one line, no control characters other than tab."""
    return all(ch == "\t" or (ch >= " " and ch != "\x7f") for ch in step)


@dataclass(frozen=True, slots=True)
class LspRewardStep:
    """One step's reward inputs and result; ``reward`` is None when D_t or D_{t-1} is unavailable.

    ``seconds`` is the server time spent on this step (0 when state t was already diagnosed).
    """

    diagnostics: DiagnosticsResult
    count: int | None
    safe: bool
    alpha_t: float
    reward: float | None
    seconds: float


def _digest(result: DiagnosticsResult) -> str:
    payload = [[d.line, d.character, d.severity, d.code, d.message] for d in result.diagnostics]
    return hashlib.sha256(json.dumps([result.status, payload]).encode()).hexdigest()[:16]


class LspRewardVerifier:
    """A :class:`~prmforge.verifiers.base.StepVerifier` for ``code`` problems (see the module docstring).

    ``servers`` maps a problem language (``"python"``) to the
    :class:`LanguageServer` that diagnoses it; the verifier closes them in
    :meth:`close`.
    """

    def __init__(
        self,
        servers: Mapping[str, LanguageServer],
        *,
        weights: RewardWeights = DEFAULT_WEIGHTS,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.servers = dict(servers)
        self.weights = weights
        self.threshold = threshold
        self._reference_cache: dict[tuple[str, str], DiagnosticsResult] = {}

    def close(self) -> None:
        for server in self.servers.values():
            server.close()

    def __enter__(self) -> LspRewardVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def score_steps(
        self, problem: Problem, steps: Sequence[str]
    ) -> tuple[DiagnosticsResult, list[LspRewardStep]]:
        """The reference's diagnostics (state -1) and every step's reward inputs and reward.

        Raises :class:`~prmforge.languages.code_program.CodeSpecError` for a non-code problem and
        KeyError when no server is configured for its language.
        """
        spec = code_spec_of(problem)
        server = self.servers[spec.language]
        key = (spec.language, assemble_program(spec, spec.reference, with_tests=False))
        if key not in self._reference_cache:
            self._reference_cache[key] = server.diagnose(key[1], name="reference")
        initial = self._reference_cache[key]
        seen: dict[str, DiagnosticsResult] = {key[1]: initial}
        out: list[LspRewardStep] = []
        previous = _count(initial)
        for t, step in enumerate(steps):
            text = assemble_program(spec, completed_prefix(steps, spec.reference, t), with_tests=False)
            seconds = 0.0
            if text not in seen:
                seen[text] = server.diagnose(text, name=f"step{t}")
                seconds = seen[text].seconds
            result = seen[text]
            count = _count(result)
            caps_ok = document_problem(
                text, max_bytes=server.max_document_bytes, max_line_chars=server.max_line_chars
            )
            safe = edit_is_safe(step) and caps_ok is None
            alpha_t = 1.0 if t < len(spec.reference) else 0.0
            reward = None
            if count is not None and previous is not None:
                reward = process_reward(previous, count, safe, alpha_t, self.weights)
            out.append(LspRewardStep(result, count, safe, alpha_t, reward, seconds))
            previous = count
        return initial, out

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        try:
            spec = code_spec_of(problem)
        except CodeSpecError as err:
            return [Check(Verdict.ABSTAIN, str(err), _TOOL, "") for _ in steps]
        server = self.servers.get(spec.language)
        if not steps:
            return []
        if server is None:
            reason = f"no language server configured for {spec.language}"
            return [Check(Verdict.UNAVAILABLE, reason, _TOOL, "") for _ in steps]
        tool = f"{_TOOL}/{server.spec.name}"
        initial, scored = self.score_steps(problem, steps)
        checks: list[Check] = []
        previous = initial
        for step in scored:
            seconds = step.seconds
            if step.reward is None:
                failed = step.diagnostics if not step.diagnostics.available else previous
                reason = f"diagnostics unavailable: {failed.reason}"
                checks.append(Check(Verdict.UNAVAILABLE, reason, tool, server.spec.version, "", seconds))
            else:
                verdict = Verdict.PASS if step.reward >= self.threshold else Verdict.FAIL
                reason = (
                    f"r={step.reward:.3f} (D {_count(previous)}->{step.count}, S={int(step.safe)}, "
                    f"alpha_t={step.alpha_t:.2f})"
                )
                if step.diagnostics.diagnostics:
                    first = step.diagnostics.diagnostics[0]
                    reason += f"; line {first.line}: {first.message}"
                checks.append(
                    Check(verdict, reason, tool, server.spec.version, _digest(step.diagnostics), seconds)
                )
            previous = step.diagnostics
        return checks


def _count(result: DiagnosticsResult) -> int | None:
    return len(result.diagnostics) if result.available else None


def pyright_lsp_reward_verifier(
    *, threshold: float = DEFAULT_THRESHOLD, diagnostics_timeout_s: float = 10.0, use_bwrap: bool = True
) -> LspRewardVerifier:
    """A :class:`LspRewardVerifier` with pyright for Python problems (C problems get UNAVAILABLE).

    Raises :class:`~prmforge.verifiers.lsp.ServerNotFoundError` when pyright or node is missing.
    """
    server = LanguageServer(pyright_spec(), diagnostics_timeout_s=diagnostics_timeout_s, use_bwrap=use_bwrap)
    return LspRewardVerifier({"python": server}, threshold=threshold)
