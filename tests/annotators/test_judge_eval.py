"""eval-annotator with the LLM judge: a replaying engine (exact scores); the real tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from judge_replay import ReplayPolicy, by_problem
from typer.testing import CliRunner

from prmforge.annotators.judge import JudgeAnnotator
from prmforge.pipelines.cli_eval import eval_app
from prmforge.pipelines.eval_annotator import (
    build_annotator,
    evaluate_annotator,
    item_records,
    load_judge_config,
    load_processbench,
)
from prmforge.schemas.engines import TransformersEngineConfig
from prmforge.schemas.errors import ConfigError

ITEMS: list[dict[str, Any]] = [
    {
        "id": "a",
        "generator": "g",
        "problem": "1+1?",
        "steps": ["1+1=3.", "So 3."],
        "final_answer_correct": False,
        "label": 0,
    },
    {
        "id": "b",
        "generator": "g",
        "problem": "2+2?",
        "steps": ["2+2=4.", "So 4."],
        "final_answer_correct": True,
        "label": -1,
    },
    {
        "id": "c",
        "generator": "g",
        "problem": "3+3?",
        "steps": ["3+3=6.", "6*1=7.", "So 7."],
        "final_answer_correct": False,
        "label": 1,
    },
    {
        "id": "d",
        "generator": "g",
        "problem": "4+4?",
        "steps": ["4+4=8."],
        "final_answer_correct": True,
        "label": -1,
    },
]
# Per item, the judge's three votes: a right, b right, c says -1 (a miss), d unreadable (unknown).
REPLIES = {
    "a": [r"\boxed{0}", r"\boxed{0}", r"\boxed{1}"],
    "b": [r"\boxed{-1}", "All steps are correct.", r"\boxed{1}"],
    "c": [r"\boxed{-1}", r"\boxed{-1}", r"\boxed{1}"],
    "d": ["gibberish", r"\boxed{5}", "more gibberish"],
}
JUDGE = {"kind": "judge", "engine": {"kind": "transformers", "model": "/models/judge"}, "votes": 3}


@pytest.fixture
def items_file(tmp_path: Path) -> Path:
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(ITEMS), encoding="utf-8")
    return path


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``build_engine`` replaced by one that records its config and answers with :data:`REPLIES`."""
    from prmforge.policies import factory

    seen: dict[str, Any] = {"configs": [], "policies": []}

    def build_engine(config: Any) -> ReplayPolicy:
        policy = ReplayPolicy(by_problem(REPLIES))
        seen["configs"].append(config)
        seen["policies"].append(policy)
        return policy

    monkeypatch.setattr(factory, "build_engine", build_engine)
    return seen


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_judge_is_scored_like_any_annotator(
    tmp_path: Path, items_file: Path, replay: dict[str, Any]
) -> None:
    annotator = build_annotator("judge", config=write(tmp_path / "judge.yaml", JUDGE), seed=3)
    assert isinstance(annotator, JudgeAnnotator)
    assert replay["configs"] == [TransformersEngineConfig(model="/models/judge")]
    report = evaluate_annotator(items_file, annotator)
    assert report.predictions == (0, -1, -1, -1)  # d's unknown first error counts as -1 by default
    assert report.unknown_first_error == 1
    assert (
        report.score.error_hits,
        report.score.n_error,
        report.score.correct_hits,
        report.score.n_correct,
    ) == (
        1,
        2,
        2,
        2,
    )
    assert report.score.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert (report.cost.completions, report.cost.tool_calls) == (12, 0)
    assert report.cost.generated_tokens == sum(len(t.split()) for texts in REPLIES.values() for t in texts)
    (policy,) = replay["policies"]
    assert [len(call) for call in policy.calls] == [4]
    missed = evaluate_annotator(
        items_file, build_annotator("judge", config=tmp_path / "judge.yaml"), none_as=None
    )
    assert missed.predictions == (0, -1, -1, None)
    assert (missed.score.correct_hits, missed.score.n_correct) == (1, 2)


def test_a_build_config_with_one_judge_entry(tmp_path: Path, replay: dict[str, Any]) -> None:
    build = {
        "name": "x",
        "inputs": [{"kind": "arith"}],
        "annotate": [{"kind": "mc", "n": 4}, {**JUDGE, "votes": 5}],
    }
    config = load_judge_config(write(tmp_path / "build.yaml", build))
    assert (config.votes, config.engine.model) == (5, "/models/judge")
    json_file = tmp_path / "judge.json"
    json_file.write_text(json.dumps(JUDGE), encoding="utf-8")
    assert load_judge_config(json_file).votes == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"annotate": [{"kind": "mc"}]},
            "annotate: holds 0 judge entries (none); eval-annotator needs exactly one",
        ),
        ({"annotate": [JUDGE, JUDGE]}, "annotate: holds 2 judge entries (annotate.0, annotate.1)"),
        ({"annotate": "judge"}, "annotate: must be a list of annotators"),
        ({"kind": "equations"}, "kind: expected 'judge', found 'equations'"),
        (["judge"], "expected a judge annotator config (a mapping with kind: judge)"),
        ({**JUDGE, "votes": 0}, "votes"),
        (
            {**JUDGE, "critique_template": "{problem}"},
            "critique_template: the critique template must contain {tagged_steps}",
        ),
        ({"kind": "judge"}, "engine"),
    ],
)
def test_bad_judge_configs_are_named(tmp_path: Path, data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_judge_config(write(tmp_path / "judge.yaml", data))
    assert message in str(err.value)
    assert str(tmp_path / "judge.yaml") in str(err.value)


def test_build_annotator_refuses_a_missing_or_misplaced_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"the judge needs its configuration file \(--config\)"):
        build_annotator("judge")
    with pytest.raises(
        ValueError, match="'equations' takes no configuration file; --config is for the judge"
    ):
        build_annotator("equations", config=tmp_path / "judge.yaml")
    with pytest.raises(ValueError, match="unknown annotator 'mc': choose 'equations', 'z3', 'judge'"):
        build_annotator("mc")


def test_the_cli_runs_the_judge_and_keeps_the_report_keys(
    tmp_path: Path, items_file: Path, replay: dict[str, Any]
) -> None:
    runner = CliRunner()
    config = write(tmp_path / "judge.yaml", JUDGE)
    out, tools_out = tmp_path / "judge-report.json", tmp_path / "tools-report.json"
    args = [
        "--input",
        str(items_file),
        "--annotator",
        "judge",
        "--config",
        str(config),
        "--json-out",
        str(out),
    ]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "judge on pb.json (4 items, 8 steps)" in text
    assert "first_error unknown (counted as -1) │ 1" in text
    assert "completions / generated tokens / cached │ 12 / 16 / 0" in text
    tools = runner.invoke(
        eval_app, ["--input", str(items_file), "--annotator", "equations", "--json-out", str(tools_out)]
    )
    assert tools.exit_code == 0, tools.output
    assert "completions / generated tokens" not in tools.output
    report, tools_report = json.loads(out.read_text()), json.loads(tools_out.read_text())
    assert report.keys() == tools_report.keys()
    assert (report["annotator"], report["items"], report["predictions"]) == ("judge", 4, [0, -1, -1, -1])
    assert report["cost"]["completions"] == 12
    miss = runner.invoke(eval_app, [*args[:6], "--unknown-as", "miss", "--json-out", str(out)])
    assert miss.exit_code == 0, miss.output
    assert "first_error unknown (counted as a miss) │ 1" in " ".join(miss.output.split())
    assert json.loads(out.read_text())["predictions"] == [0, -1, -1, None]


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        (["--annotator", "judge"], "the judge needs its configuration file"),
        (["--annotator", "equations", "--config", "{config}"], "'equations' takes no configuration file"),
        (["--annotator", "judge", "--config", "{missing}"], "is not a file"),
        (["--annotator", "judge", "--config", "{bad}"], "votes"),
        (["--annotator", "judge", "--config", "{config}", "--unknown-as", "zero"], "choose no-error or miss"),
        (["--annotator", "nope"], "unknown annotator 'nope'"),
    ],
)
def test_cli_usage_errors(
    tmp_path: Path, items_file: Path, replay: dict[str, Any], extra: list[str], hint: str
) -> None:
    paths = {
        "config": str(write(tmp_path / "judge.yaml", JUDGE)),
        "bad": str(write(tmp_path / "bad.yaml", {**JUDGE, "votes": 0})),
        "missing": str(tmp_path / "none.yaml"),
    }
    result = CliRunner().invoke(eval_app, ["--input", str(items_file), *[e.format(**paths) for e in extra]])
    assert result.exit_code == 2, result.output
    assert hint in " ".join(result.output.replace("│", " ").split())


@pytest.mark.slow
def test_the_real_tiny_model_judges_gibberish_and_every_rollout_abstains(
    tiny_model_dir: Path, tmp_path: Path, items_file: Path
) -> None:
    """The tiny model is random: nothing it writes names a step, so every vote abstains with its text kept."""
    judge = {
        **JUDGE,
        "engine": {"kind": "transformers", "model": str(tiny_model_dir), "device": "cpu"},
        "votes": 2,
    }
    judge["sampling"] = {"temperature": 1.0, "max_tokens": 24}
    for mode in ("critique", "per-step"):
        annotator = build_annotator("judge", config=write(tmp_path / f"{mode}.yaml", {**judge, "mode": mode}))
        records = [item_records(item) for item in load_processbench(items_file)]
        problems = {p.problem_id: p for p, _ in records}
        labels = annotator.annotate(problems, [r for _, r in records])
        for item, one in zip(ITEMS, labels, strict=True):
            steps = len(one.hard)
            assert steps == len(item["steps"])
            assert one.first_error is None, one.meta["responses"]
            assert one.hard == (None,) * steps
            assert "abstained" in one.meta
            responses = one.meta["responses"]
            texts = responses if mode == "critique" else [t for per_step in responses for t in per_step]
            assert len(texts) == (2 if mode == "critique" else 2 * steps)
            assert all(isinstance(t, str) for t in texts)
            assert one.cost.completions == len(texts)
            assert one.cost.generated_tokens > 0
            assert one.cost.prompt_tokens > 0
