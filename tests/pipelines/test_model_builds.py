"""Builds whose policy is a real model engine (transformers, on the tiny local model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import committed

from prmforge.pipelines.config import parse_config
from prmforge.pipelines.engines import check_policy
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Rollout, StepLabels

pytestmark = pytest.mark.slow


def _config(model: Path, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "name": "model-build",
        "seed": 3,
        "inputs": [{"kind": "arith", "count": 4, "min_steps": 2, "max_steps": 3}],
        "policy": {
            "kind": "transformers",
            "model": str(model),
            "sampling": {"temperature": 1.0, "max_tokens": 12},
        },
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 2, "last_step_from_outcome": False, "sampling": {"max_tokens": 8}}],
        "runner": {"workers": 0, "shard_size": 2},
    }
    data.update(overrides)
    return parse_config(data)


def test_a_transformers_build_is_deterministic_resumes_from_the_cache_and_names_the_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = _config(tiny_model_dir)
    first = LocalRunner().run(config, tmp_path / "a")
    rollouts: list[Rollout] = committed(tmp_path / "a", "stages/generate/", "rollout")
    assert len(rollouts) == 8
    assert {r.policy for r in rollouts} == {rollouts[0].policy}
    assert rollouts[0].policy.startswith("transformers:")
    assert all(0 < r.completion_tokens <= 12 for r in rollouts)
    assert sum(r.completion_tokens for r in rollouts) > 0
    labels: list[StepLabels] = committed(tmp_path / "a", "stages/annotate-mc/", "labels")
    steps = sum(len(r.steps) for r in rollouts)
    assert sum(label.cost.completions for label in labels) == 2 * steps  # n=2 after every step
    assert sum(label.cost.generated_tokens for label in labels) > 0
    assert sum(label.cost.prompt_tokens for label in labels) > 0
    card = (tmp_path / "a" / "README.md").read_text()
    assert f"transformers engine, model `{tiny_model_dir}`" in card
    pooled = LocalRunner().run(config, tmp_path / "b", workers=2)
    assert pooled.content_hash == first.content_hash  # per-sequence seeds: workers change nothing
    build = BuildDir(tmp_path / "a")
    for shard in range(2):  # as if the build had been killed after generating, before committing labels
        build.marker_file("annotate-mc", shard).unlink()
    again = LocalRunner().run(config, tmp_path / "a")
    assert again.content_hash == first.content_hash
    relabelled: list[StepLabels] = committed(tmp_path / "a", "stages/annotate-mc/", "labels")
    assert sum(label.cost.cached_completions for label in relabelled) == 2 * steps  # nothing paid twice


def test_a_model_continues_imported_rollouts_for_monte_carlo(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rollouts.jsonl"
    rows.write_text(
        '{"question": "What is 2 + 3?", "steps": ["2 + 3 = 5", "The answer is 5"], "answer": "5"}\n'
    )
    config = _config(tiny_model_dir, inputs=[{"kind": "rollouts", "path": str(rows)}])
    LocalRunner().run(config, tmp_path / "b")
    (labels,) = committed(tmp_path / "b", "stages/annotate-mc/", "labels")
    assert labels.cost.completions == 4
    assert "abstained" not in labels.meta


def test_a_model_policy_refuses_the_scripted_suites(tiny_model_dir: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"inputs\.0: the logic suite's rollouts come from its scripted policy"
    ):
        _config(tiny_model_dir, inputs=[{"kind": "logic", "count": 2}], annotate=[{"kind": "z3"}])


def test_engine_settings_are_checked_before_any_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _config(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=r"policy\.model: .*no-such-model does not exist"):
        check_policy(missing)
    monkeypatch.delenv("PRMFORGE_TEST_KEY", raising=False)
    http = _config(
        tmp_path,
        policy={
            "kind": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_env": "PRMFORGE_TEST_KEY",
        },
    )
    with pytest.raises(
        ConfigError, match=r"policy\.api_key_env: the environment variable PRMFORGE_TEST_KEY is not set"
    ):
        check_policy(http)
    monkeypatch.setenv("PRMFORGE_TEST_KEY", "sk-secret")
    check_policy(http)
    assert "sk-secret" not in http.model_dump_json()


def test_the_transformers_example_runs_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "configs" / "examples" / "policy-transformers.yaml"
    data = yaml.safe_load(example.read_text())
    data["policy"]["model"] = str(tiny_model_dir)
    data["policy"]["dtype"] = "float32"
    data["policy"]["sampling"]["max_tokens"] = 8
    data["inputs"] = [{"kind": "arith", "count": 2}]
    data["generate"]["rollouts_per_problem"] = 1
    data["annotate"] = [{"kind": "mc", "n": 1, "sampling": {"max_tokens": 4}}]
    data["runner"] = {"workers": 0}
    LocalRunner().run(parse_config(data), tmp_path / "b")
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert len(rollouts) == 2
    assert "system=" in rollouts[0].policy  # the example's system prompt reached the engine


def test_a_judge_labels_in_a_build_beside_monte_carlo(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The simulated policy writes rollouts; a judge on the tiny transformers model critiques them (it
    writes gibberish, so every rollout abstains with its raw responses kept) and MC labels as usual."""
    judge = {
        "kind": "judge",
        "engine": {"kind": "transformers", "model": str(tiny_model_dir), "device": "cpu"},
        "votes": 2,
        "sampling": {"temperature": 1.0, "max_tokens": 16},
    }
    config = parse_config(
        {
            "name": "judge-build",
            "seed": 5,
            "inputs": [{"kind": "arith", "count": 3, "min_steps": 2, "max_steps": 3}],
            "generate": {"rollouts_per_problem": 2},
            "annotate": [{"kind": "mc", "n": 2}, judge],
            "fuse": {"rule": "single", "source": "mc"},
            "runner": {"workers": 0, "shard_size": 3},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    labels: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-judge/", "labels")
    assert len(labels) == 6
    for one in labels:
        assert one.first_error is None
        assert len(one.meta["responses"]) == 2
        assert one.cost.completions == 2
        assert one.cost.prompt_tokens > 0
    card = (tmp_path / "b" / "README.md").read_text()
    assert f"transformers {tiny_model_dir}" in card


def test_omegaprm_runs_on_a_model_engine_over_imported_rollouts(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Any engine that continues a prefix serves the search: the tiny model's completions never reach
    the gold answer, so each wrong rollout's binary search ends at its first step."""
    rows = tmp_path / "rollouts.jsonl"
    rows.write_text(
        '{"question": "What is 2 + 3?", "steps": ["2 + 3 = 6", "so 6", "The answer is 6"], "answer": "5"}\n'
    )
    config = _config(
        tiny_model_dir,
        inputs=[{"kind": "rollouts", "path": str(rows)}],
        annotate=[{"kind": "omegaprm", "k": 2, "search_limit": 0, "sampling": {"max_tokens": 8}}],
    )
    LocalRunner().run(config, tmp_path / "b")
    (labels,) = committed(tmp_path / "b", "stages/annotate-omegaprm/", "labels")
    assert labels.first_error == 0
    assert labels.hard == (False, False, False)
    assert labels.cost.completions > 0
    assert labels.cost.prompt_tokens > 0
