"""Builds labelled by tool verifiers: logic with Z3, code with compile-and-test and the language server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import committed

from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Rollout
from prmforge.verifiers.sandbox import probe_isolation


def _reached() -> str:
    """What the card must quote: the sandbox's layers as reached on this machine."""
    layers = probe_isolation().layers
    assert layers.startswith(("bwrap+seccomp+", "bwrap-userns+seccomp+"))
    return f"{layers} (namespaces, no network, read-only system, seccomp, rlimits)"


def _config(name: str, inputs: list[dict[str, Any]], annotate: list[dict[str, Any]], **more: Any) -> Any:
    return parse_config(
        {
            "name": name,
            "seed": 3,
            "inputs": inputs,
            "generate": {"rollouts_per_problem": more.pop("rollouts", 3)},
            "annotate": annotate,
            "runner": {"workers": 0, "shard_size": more.pop("shard_size", 3)},
            **more,
        }
    )


def test_logic_suite_labelled_by_z3_matches_truth(tmp_path: Path) -> None:
    config = _config("logic", [{"kind": "logic", "count": 6}], [{"kind": "z3"}])
    LocalRunner().run(config, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["stages"]["annotate-z3"] == {
        "rows_in": 18,
        "accepted": 18,
        "quarantined": 0,
        "excluded": 0,
        "rows_out": 18,
    }
    assert manifest["verification"] == {
        "z3": {
            "method": "z3",
            "tool": "z3 5.4.1",
            "isolation": "child process with an address-space rlimit, deterministic rlimit, hard kill",
        }
    }
    summary = summarize(tmp_path / "b")
    assert summary["quality"]["first_error_f1"] == 1.0
    assert summary["quality"]["step_accuracy"] == 1.0
    assert summary["cost"]["tool_calls"] == summary["steps"]
    assert summary["quality_by_source"]["z3"]["coverage"] == 1.0
    card = (tmp_path / "b" / "README.md").read_text()
    assert (
        "| `z3` | Z3 local entailment of each inference from its cited premises (FoVer). | z3 5.4.1 | "
        "child process with an address-space rlimit, deterministic rlimit, hard kill |"
    ) in card
    grading = "Outcome grading (final answers against the gold): exact numbers, else math-verify 0.9.0"
    assert grading in card


@pytest.mark.slow
def test_code_suite_labelled_by_compile_and_test_records_the_isolation(tmp_path: Path) -> None:
    config = _config("code", [{"kind": "code", "count": 4}], [{"kind": "compile-test"}], shard_size=4)
    LocalRunner().run(config, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    reached = _reached()
    assert manifest["verification"]["compile-test"]["isolation"] == reached
    summary = summarize(tmp_path / "b")
    assert summary["rows"] == 12
    assert summary["quality"]["first_error_f1"] == 1.0
    assert f"| gcc + python3 in the sandbox | {reached} |" in (tmp_path / "b" / "README.md").read_text()


@pytest.mark.slow
def test_code_suite_labelled_by_compile_test_and_the_language_server(tmp_path: Path) -> None:
    """Two tool sources on code, fused by `earliest`: every row carries both votes."""
    config = _config(
        "code2",
        [{"kind": "code", "count": 2, "languages": ["python"]}],
        [{"kind": "compile-test"}, {"kind": "lsp-reward"}],
        rollouts=2,
        shard_size=2,
        fuse={"rule": "earliest"},
    )
    result = LocalRunner().run(config, tmp_path / "b")
    assert result.problems == ()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["sources"] == ["compile-test", "lsp-reward"]
    assert manifest["verification"]["lsp-reward"]["tool"] == "pyright language server"
    rows = committed(tmp_path / "b", "data/", "example")
    assert len(rows) == 4
    assert all([v.source for v in e.votes] == ["compile-test", "lsp-reward"] for e in rows)
    summary = summarize(tmp_path / "b")
    assert set(summary["cost_by_source"]) == {"compile-test", "lsp-reward"}
    assert summary["cost_by_source"]["lsp-reward"]["completions"] == 0
    assert summary["cost_by_source"]["lsp-reward"]["tool_calls"] > 0


def test_equation_labels_leave_out_rollouts_they_cannot_decide(tmp_path: Path) -> None:
    """Logic steps state no equation: the checker abstains, and the rows are left out with a reason."""
    config = _config(
        "eq",
        [{"kind": "arith", "count": 4}, {"kind": "logic", "count": 2}],
        [{"kind": "equations"}],
        rollouts=2,
        shard_size=6,
    )
    LocalRunner().run(config, tmp_path / "b")
    summary = summarize(tmp_path / "b")
    # Not quarantined (nothing failed): excluded by decision, counted apart.
    assert summary["stages"]["annotate-equations"] == {
        "rows_in": 12, "accepted": 12, "quarantined": 0, "excluded": 0, "rows_out": 12,
    }  # fmt: skip
    assert summary["stages"]["assemble"] == {
        "rows_in": 12, "accepted": 12, "quarantined": 0, "excluded": 4, "rows_out": 8,
    }  # fmt: skip
    assert summary["quarantined"] == 0
    assert summary["excluded"] == 4
    assert summary["excluded_reasons"] == {
        "assemble: first_error: undecided: equations abstained: labels math problems only, not logic": 4
    }
    assert summary["quality_by_source"]["equations"]["coverage"] == round(8 / 12, 4)
    card = (tmp_path / "b" / "README.md").read_text()
    assert (
        "- 4 x assemble: first_error: undecided: equations abstained: labels math problems only, not logic"
        in card
    )


def test_monte_carlo_on_a_tool_suite_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "inputs": [{"kind": "code"}]})
    assert str(err.value) == (
        "<config>: 1 problem(s) in the configuration\n"
        "  annotate.0: 'mc' labels math problems only, and the inputs (code) give code; it would label "
        "nothing"
    )


def test_rollout_ids_do_not_depend_on_how_problems_are_packed_into_shards(tmp_path: Path) -> None:
    """A mixed math + logic build gives each problem the same rollouts whatever the shard size."""

    def rollouts(shard_size: int) -> dict[str, str]:
        config = _config(
            "mixed",
            [{"kind": "arith", "count": 3}, {"kind": "logic", "count": 3}],
            [{"kind": "equations"}],
            rollouts=2,
            shard_size=shard_size,
        )
        out = tmp_path / f"s{shard_size}"
        LocalRunner().run(config, out)
        found: list[Rollout] = committed(out, "stages/generate/", "rollout")
        return {r.rollout_id: r.problem_id for r in found}

    assert rollouts(2) == rollouts(6)
    assert len(rollouts(2)) == 12


@pytest.mark.slow
def test_weaker_isolation_is_an_explicit_choice_recorded_in_the_card(tmp_path: Path) -> None:
    config = _config(
        "code-weak",
        [{"kind": "code", "count": 2}],
        [{"kind": "compile-test"}],
        rollouts=2,
        shard_size=2,
        sandbox={"isolation": "rlimits-only"},
    )
    LocalRunner().run(config, tmp_path / "b")
    isolation = json.loads((tmp_path / "b" / "manifest.json").read_text())["verification"]["compile-test"]
    assert isolation["isolation"] == "cleared environment + rlimits only (opted in)"
    assert "| cleared environment + rlimits only (opted in) |" in (tmp_path / "b" / "README.md").read_text()
    assert summarize(tmp_path / "b")["quality"]["first_error_f1"] == 1.0


@pytest.mark.slow
def test_warm_jails_and_fresh_jails_build_the_same_dataset(tmp_path: Path) -> None:
    """`sandbox.warm` changes how fast code runs, never a label: both builds have one content hash."""
    inputs = [{"kind": "code", "count": 4}]
    warm = _config("code", inputs, [{"kind": "compile-test"}], shard_size=4)
    fresh = _config("code", inputs, [{"kind": "compile-test"}], shard_size=4, sandbox={"warm": False})
    assert warm.sandbox.warm
    assert not fresh.sandbox.warm
    assert warm.content_hash() == fresh.content_hash()
    LocalRunner().run(warm, tmp_path / "warm")
    LocalRunner().run(fresh, tmp_path / "fresh")
    manifests = [json.loads((tmp_path / b / "manifest.json").read_text()) for b in ("warm", "fresh")]
    assert manifests[0]["content_hash"] == manifests[1]["content_hash"]
    assert summarize(tmp_path / "warm")["quality"] == summarize(tmp_path / "fresh")["quality"]
