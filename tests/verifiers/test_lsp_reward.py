"""The Lanser-CLI process reward: exact values of the pure function, and the verifier on pyright."""

from __future__ import annotations

import pytest

from prmforge.schemas.records import Problem
from prmforge.suites.code import generate_code_problems
from prmforge.verifiers.lsp import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    LanguageServer,
    ServerNotFoundError,
    pyright_spec,
)
from prmforge.verifiers.lsp_reward import (
    DEFAULT_WEIGHTS,
    LspRewardVerifier,
    RewardWeights,
    edit_is_safe,
    process_reward,
    process_rewards,
)
from prmforge.verifiers.verdict import Verdict


def test_default_weights_are_the_papers() -> None:
    """(alpha, beta, gamma) = (0.5, 0.4, 0.1)."""
    assert DEFAULT_WEIGHTS.as_dict() == {"alpha": 0.5, "beta": 0.4, "gamma": 0.1}


@pytest.mark.parametrize(
    ("d_prev", "d_t", "safe", "alpha_t", "expected"),
    [
        (1, 0, True, 0.72, 0.872),  # the paper's bundle: diag_delta 1, safety 1, penalty 0.28
        (2, 2, False, 0.62, -0.038),  # the paper's Example 2 by the formula (the paper prints -0.438)
        (0, 0, True, 1.0, 0.4),  # nothing changed, safe, unambiguous
        (0, 1, True, 1.0, -0.1),  # one new diagnostic
        (0, 0, True, 0.0, 0.3),  # no anchor for the edit
        (0, 0, False, 1.0, 0.0),  # unsafe edit
        (3, 0, True, 1.0, 1.9),  # three diagnostics fixed
        (0, 2, False, 0.0, -1.1),  # the worst of everything with two new diagnostics
    ],
)
def test_process_reward_exact_values(
    d_prev: int, d_t: int, safe: bool, alpha_t: float, expected: float
) -> None:
    """r_t = 0.5 (D_{t-1} - D_t) + 0.4 S_t - 0.1 (1 - alpha_t)."""
    assert process_reward(d_prev, d_t, safe, alpha_t) == pytest.approx(expected, abs=1e-12)


def test_custom_weights() -> None:
    """Weights are honoured term by term."""
    weights = RewardWeights(alpha=1.0, beta=2.0, gamma=3.0)
    assert process_reward(2, 1, True, 0.5, weights) == pytest.approx(1.0 + 2.0 - 1.5)
    with pytest.raises(ValueError, match="weights must be"):
        RewardWeights(alpha=-1.0)


def test_process_rewards_chains_counts_from_the_initial_state() -> None:
    """D_{-1} is ``initial``; each later step compares with the step before."""
    rewards = process_rewards([0, 1, 1, 0], [True, True, False, True], [1.0, 1.0, 1.0, 0.5], initial=0)
    assert rewards == pytest.approx([0.4, -0.1, 0.0, 0.85])
    with pytest.raises(ValueError, match="one count"):
        process_rewards([0], [True, True], [1.0], initial=0)


def test_monotone_inputs_give_non_negative_rewards() -> None:
    """Prop. 5.2 for safe steps: non-increasing D and S_t = 1 give r_t >= 0 for any alpha_t."""
    for d_prev in range(4):
        for d_t in range(d_prev + 1):
            for alpha_t in (0.0, 0.3, 1.0):
                assert process_reward(d_prev, d_t, True, alpha_t) >= 0


def test_invalid_reward_inputs() -> None:
    """Negative counts and alpha_t outside [0, 1] raise."""
    with pytest.raises(ValueError, match="counts"):
        process_reward(-1, 0, True, 1.0)
    with pytest.raises(ValueError, match="alpha_t"):
        process_reward(0, 0, True, 1.5)


def test_edit_safety() -> None:
    """One printable line (tabs allowed) is a safe edit; a newline or a control character is not."""
    assert edit_is_safe("    total += n % 10\t# ok")
    assert not edit_is_safe("x = 1\ny = 2")
    assert not edit_is_safe("x = '\x1b[2J'")


def test_c_problems_are_unavailable_without_a_c_server() -> None:
    """No server for the language -> UNAVAILABLE on every line, never PASS."""
    problem = generate_code_problems(1, 0, languages=("c",))[0]
    checks = LspRewardVerifier({}).check_steps(problem, problem.meta["reference"])
    assert {c.verdict for c in checks} == {Verdict.UNAVAILABLE}
    assert len(checks) == len(problem.meta["reference"])


def _pyright_server(max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> LanguageServer:
    try:
        return LanguageServer(pyright_spec(), max_document_bytes=max_document_bytes)
    except ServerNotFoundError:
        pytest.skip("pyright wheel or node not installed")


def _sum_digits_problem() -> Problem:
    return next(
        p for p in generate_code_problems(16, 0, languages=("python",)) if p.meta["task"] == "sum_digits"
    )


def test_verifier_fails_exactly_the_line_that_adds_a_diagnostic() -> None:
    """An undefined name on line 4 gives r=-0.1 (FAIL) there; later lines keep D and pass at 0.4."""
    problem = _sum_digits_problem()
    steps = list(problem.meta["reference"])
    steps[4] = steps[4].replace("n % 10", "m % 10")
    with LspRewardVerifier({"python": _pyright_server()}) as verifier:
        initial, scored = verifier.score_steps(problem, steps)
        checks = verifier.check_steps(problem, steps)
    assert initial.status == "clean"
    assert [s.count for s in scored] == [0, 0, 0, 0, 1, 1, 1]
    assert [s.reward for s in scored] == pytest.approx([0.4, 0.4, 0.4, 0.4, -0.1, 0.4, 0.4])
    assert [c.verdict for c in checks] == [Verdict.PASS] * 4 + [Verdict.FAIL] + [Verdict.PASS] * 2
    assert checks[4].reason.startswith("r=-0.100 (D 0->1, S=1, alpha_t=1.00); line 4:")
    assert checks[4].tool == "lanser-reward/pyright"
    assert checks[4].output_digest


def test_verifier_reports_unavailable_when_documents_are_over_the_cap() -> None:
    """If the server cannot diagnose (here: a tiny document cap), every line is UNAVAILABLE, not PASS."""
    problem = _sum_digits_problem()
    with LspRewardVerifier({"python": _pyright_server(max_document_bytes=10)}) as verifier:
        checks = verifier.check_steps(problem, problem.meta["reference"])
    assert {c.verdict for c in checks} == {Verdict.UNAVAILABLE}
    assert "exceeds the cap of 10 bytes" in checks[0].reason
