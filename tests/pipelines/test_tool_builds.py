"""Builds labelled by tool verifiers: the logic suite with Z3, the code suite with compile-and-test."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prmforge.pipelines.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.schemas.config import parse_config
from prmforge.schemas.errors import ConfigError


def test_logic_suite_labelled_by_z3_matches_truth(tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "logic",
            "seed": 3,
            "suites": [{"kind": "logic", "count": 6}],
            "generate": {"rollouts_per_problem": 3},
            "annotate": {"method": "z3"},
            "runner": {"workers": 0, "shard_size": 3},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["stages"]["annotate-z3"] == {
        "rows_in": 18,
        "accepted": 18,
        "quarantined": 0,
        "rows_out": 18,
    }
    assert manifest["verification"]["tool"] == "z3 5.4.1"
    summary = summarize(tmp_path / "b")
    assert summary["quality"]["first_error_f1"] == 1.0
    assert summary["quality"]["step_accuracy"] == 1.0
    assert summary["cost"]["tool_calls"] == summary["steps"]
    card = (tmp_path / "b" / "README.md").read_text()
    assert "Z3 local entailment" in card
    assert "isolation: **child process with an address-space rlimit" in card


@pytest.mark.slow
def test_code_suite_labelled_by_compile_and_test_records_the_isolation(tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "code",
            "seed": 3,
            "suites": [{"kind": "code", "count": 4}],
            "generate": {"rollouts_per_problem": 3},
            "annotate": {"method": "compile-test"},
            "runner": {"workers": 0, "shard_size": 4},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["verification"]["isolation"] == "bwrap+seccomp+pids+memory+rlimits+tmpfs+uid65534"
    summary = summarize(tmp_path / "b")
    assert summary["rows"] == 12
    assert summary["quality"]["first_error_f1"] == 1.0
    assert "isolation: **bwrap+seccomp" in (tmp_path / "b" / "README.md").read_text()


def test_equation_labels_quarantine_rollouts_they_cannot_decide(tmp_path: Path) -> None:
    """Logic steps state no equation: the checker abstains and the rows are quarantined, with a reason."""
    config = parse_config(
        {
            "name": "eq",
            "suites": [{"kind": "arith", "count": 4}, {"kind": "logic", "count": 2}],
            "generate": {"rollouts_per_problem": 2},
            "annotate": {"method": "equations"},
            "runner": {"workers": 0, "shard_size": 6},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    summary = summarize(tmp_path / "b")
    assert summary["stages"]["assemble"] == {"rows_in": 12, "accepted": 8, "quarantined": 4, "rows_out": 8}
    assert summary["quarantine_reasons"] == {
        "assemble: first_error: equations could not decide a first error (an unchecked step comes first)": 4
    }


def test_monte_carlo_on_a_tool_suite_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"annotate\.method 'mc' needs a policy that continues a prefix"):
        parse_config({"name": "x", "suites": [{"kind": "code"}]})


def test_rollout_ids_do_not_depend_on_how_problems_are_packed_into_shards(tmp_path: Path) -> None:
    """A mixed math + logic build gives each problem the same rollouts whatever the shard size."""
    from prmforge.schemas.arrow import rollouts_from_table

    def rollouts(shard_size: int) -> dict[str, str]:
        config = parse_config(
            {
                "name": "mixed",
                "suites": [{"kind": "arith", "count": 3}, {"kind": "logic", "count": 3}],
                "generate": {"rollouts_per_problem": 2},
                "annotate": {"method": "equations"},
                "runner": {"workers": 0, "shard_size": shard_size},
            }
        )
        out = tmp_path / f"s{shard_size}"
        LocalRunner().run(config, out)
        found = {}
        for path in sorted((out / "stages" / "generate").glob("*.parquet")):
            found.update({r.rollout_id: r.problem_id for r in rollouts_from_table(pq.read_table(path))})
        return found

    assert rollouts(2) == rollouts(6)
    assert len(rollouts(2)) == 12


@pytest.mark.slow
def test_weaker_isolation_is_an_explicit_choice_recorded_in_the_card(tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "code-weak",
            "seed": 3,
            "suites": [{"kind": "code", "count": 2}],
            "generate": {"rollouts_per_problem": 2},
            "annotate": {"method": "compile-test", "isolation": "rlimits-only"},
            "runner": {"workers": 0, "shard_size": 2},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    isolation = json.loads((tmp_path / "b" / "manifest.json").read_text())["verification"]["isolation"]
    assert isolation.startswith("rlimits-only:")
    assert f"isolation: **{isolation}**" in (tmp_path / "b" / "README.md").read_text()
    assert summarize(tmp_path / "b")["quality"]["first_error_f1"] == 1.0
