"""A trained PRM as a label source: thresholded step scores, soft values kept, in a real build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from prmforge.annotators.base import Annotator
from prmforge.annotators.prm import PRMAnnotator, labels_from_scores
from prmforge.annotators.prm_config import PRMConfig
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels
from prmforge.training.scoring import StepScores


class FakeScorer:
    def __init__(self, results: list[StepScores]) -> None:
        self.results = results
        self.seen: list[tuple[str, Sequence[str]]] = []

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]:
        self.seen.extend(items)
        return self.results[: len(items)]

    def describe(self) -> dict[str, Any]:
        return {"model": "fake", "format": "token-classification"}


def _rollout(rollout_id: str, steps: Sequence[str]) -> Rollout:
    return Rollout(
        rollout_id, "p1", "test", SamplingParams(), 0, "\n\n".join(steps), tuple(steps), None, None, 0, 0
    )


PROBLEMS = {"p1": Problem("p1", "math", "What is 3+2?", "5", "test")}


@pytest.mark.parametrize(
    ("scores", "threshold", "hard"),
    [
        ((0.92, 0.61, 0.18, 0.70), 0.5, (True, True, False, True)),
        ((0.5, 0.49), 0.5, (True, False)),
        ((0.9, None), 0.95, (False, None)),
        ((), 0.5, ()),
    ],
)
def test_labels_from_scores(
    scores: tuple[float | None, ...], threshold: float, hard: tuple[bool | None, ...]
) -> None:
    assert labels_from_scores(scores, threshold) == hard


def test_the_annotator_keeps_the_scores_and_reads_only_the_question_and_steps() -> None:
    scorer = FakeScorer([StepScores((0.92, 0.61, 0.18, 0.70), 30), StepScores((0.9, None), 10)])
    annotator = PRMAnnotator(scorer, 0.5, "prm")
    assert isinstance(annotator, Annotator)
    out = annotator.annotate(PROBLEMS, [_rollout("r1", ["a", "b", "c", "d"]), _rollout("r2", ["a", "b"])])
    assert scorer.seen == [("What is 3+2?", ("a", "b", "c", "d")), ("What is 3+2?", ("a", "b"))]
    first, second = out
    assert (first.source, first.rollout_id, first.values) == ("prm", "r1", (0.92, 0.61, 0.18, 0.70))
    assert (first.hard, first.first_error) == ((True, True, False, True), 2)
    assert (second.hard, second.first_error) == ((True, None), None)  # the unscored step may hide an error
    assert first.cost.prompt_tokens == 30
    assert second.cost.prompt_tokens == 10
    assert first.cost.completions == 0
    assert first.meta == {
        "model": "fake",
        "format": "token-classification",
        "threshold": 0.5,
        "tokens": 30,
        "unscored_steps": 0,
    }
    assert second.meta["unscored_steps"] == 1


def test_an_unreadable_rollout_abstains() -> None:
    scorer = FakeScorer([StepScores((None, None), 0, "the text contains the step tag <extra_0>")])
    (labels,) = PRMAnnotator(scorer, 0.5).annotate(PROBLEMS, [_rollout("r1", ["a", "b"])])
    assert labels == StepLabels(
        "prm",
        "r1",
        (None, None),
        (None, None),
        None,
        Cost(prompt_tokens=0, seconds=labels.cost.seconds),
        {
            "model": "fake",
            "format": "token-classification",
            "threshold": 0.5,
            "tokens": 0,
            "unscored_steps": 2,
            "abstained": "the text contains the step tag <extra_0>",
        },
    )


def test_the_config_validates_without_the_model_and_names_bad_fields() -> None:
    from prmforge.pipelines.config import parse_config

    base = {"name": "t", "inputs": [{"kind": "arith", "count": 2}]}
    config = parse_config({**base, "annotate": [{"kind": "prm", "model": "no/such-model-yet"}]})
    (spec,) = config.annotate
    assert isinstance(spec, PRMConfig)
    assert spec.source == "prm"
    assert spec.threshold == 0.5
    assert spec.provenance("bwrap")["tool"] == "PRM no/such-model-yet (token-classification)"
    for bad, field in (
        ({"threshold": 1.5}, "annotate.0.threshold"),
        ({"device": "gpu"}, "annotate.0.device"),
        ({"format": "qwen"}, "annotate.0.format"),
        ({}, "annotate.0.model"),
    ):
        entry = {"kind": "prm", **({"model": "m"} if "model" not in field else {}), **bad}
        with pytest.raises(ConfigError, match=field):
            parse_config({**base, "annotate": [entry]})


@pytest.fixture(scope="module")
def prm_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A token-classification PRM `prmforge train` wrote, and a random Qwen-style one with <extra_0>."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    from prmforge.training.config import TrainConfig
    from prmforge.training.trainer import train

    root = tmp_path_factory.mktemp("prm-annotator")
    rows = root / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "What is 3+2?", "completions": ["3+2 = 5.", "5"], "labels": [True, True]})
    )
    train(rows, str(tiny_model_dir), root / "tc", TrainConfig(max_steps=2, batch_size=1))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=2)
    config.vocab_size, config.architectures = len(tokenizer), ["LlamaForTokenClassification"]
    torch.manual_seed(0)
    AutoModelForTokenClassification.from_config(config).save_pretrained(root / "qwen")
    tokenizer.save_pretrained(root / "qwen")
    return {"tc": root / "tc", "qwen": root / "qwen"}


@pytest.mark.slow
def test_a_build_labels_with_both_prm_formats_and_fuses_them(
    prm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    from prmforge.pipelines import tables
    from prmforge.pipelines.config import parse_config
    from prmforge.pipelines.runners.builddir import BuildDir
    from prmforge.pipelines.runners.local import LocalRunner
    from prmforge.pipelines.runners.manifest import Manifest
    from prmforge.training.scoring import PRMScorer

    config = parse_config(
        {
            "name": "prm-annotator",
            "seed": 5,
            "inputs": [{"kind": "arith", "count": 4, "min_steps": 2, "max_steps": 4}],
            "generate": {"rollouts_per_problem": 2},
            "annotate": [
                {"kind": "equations"},
                {
                    "kind": "prm",
                    "name": "prm-tc",
                    "model": str(prm_dirs["tc"]),
                    "device": "cpu",
                    "batch_size": 3,
                },
                {
                    "kind": "prm",
                    "name": "prm-qwen",
                    "model": str(prm_dirs["qwen"]),
                    "format": "qwen-step-reward",
                    "threshold": 0.4,
                    "device": "cpu",
                },
            ],
            "fuse": {"rule": "earliest"},
            "runner": {"workers": 0, "shard_size": 8, "cache": False},
        }
    )
    root = tmp_path / "build"
    LocalRunner().run(config, root)
    manifest, build = Manifest.read(root), BuildDir(root)
    assert {"prm-tc", "prm-qwen"} <= set(manifest.sources)

    def read(prefix: str, kind: str) -> list[Any]:
        return [r for f in manifest.under(prefix) for r in tables.decode(kind, build.read_table(f.entry))]

    rollouts = read("stages/generate/", "rollout")
    problems = {p.problem_id: p for p in read("stages/load/", "problem")}
    for source, folder, fmt, threshold in (
        ("prm-tc", "tc", "token-classification", 0.5),
        ("prm-qwen", "qwen", "qwen-step-reward", 0.4),
    ):
        labels = {lab.rollout_id: lab for lab in read(f"stages/annotate-{source}/", "labels")}
        expected = PRMScorer(str(prm_dirs[folder]), format=fmt, device="cpu").score(  # type: ignore[arg-type]
            [(problems[r.problem_id].question, r.steps) for r in rollouts]
        )
        for rollout, want in zip(rollouts, expected, strict=True):
            got = labels[rollout.rollout_id]
            assert got.values == pytest.approx(want.scores, abs=1e-5)
            assert got.hard == tuple(s >= threshold for s in got.values)  # type: ignore[operator]
            assert got.meta["format"] == fmt
            assert got.cost.prompt_tokens == want.tokens
    fused = read("stages/fuse/", "fused")
    assert fused
    assert all({v.source for v in f.votes} >= {"prm-tc", "prm-qwen"} for f in fused)
