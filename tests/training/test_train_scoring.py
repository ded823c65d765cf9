"""Scoring with a trained PRM: the score at each step's separator, batched; the Qwen2.5-Math-PRM format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from training_data import write_qwen_style_prm

from prmforge.schemas.errors import ConfigError
from prmforge.training.config import PRM_META
from prmforge.training.scoring import PRMScorer, model_fingerprint, qwen_positions, qwen_text, read_prm_meta
from prmforge.training.tokenize import TokenizeSpec, tokenize_row

ITEMS = [
    ("Ann has 3 apples and buys 2.", ["3+2 = 5.", "The answer is 5."]),
    ("Bo has 10 pens and loses 4.", ["10-4 = 7.", "So Bo has 7 pens.", "The answer is 7."]),
    ("Cy reads 5 pages a day for 3 days.", ["5*3 = 15."]),
]


def _manual(folder: Path, prompt: str, steps: list[str], positions: list[int], ids: list[int]) -> list[float]:
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return [float(torch.softmax(logits[p], -1)[1]) for p in positions]


def test_token_classification_scores_are_read_at_each_separator(trained_prm: Path) -> None:
    from transformers import AutoTokenizer

    scorer = PRMScorer(str(trained_prm), device="cpu", batch_size=2)
    assert scorer.describe()["separator"] == "\n\n"
    assert scorer.describe()["tokenization"] == "prmforge"
    got = scorer.score(ITEMS)
    tok = AutoTokenizer.from_pretrained(trained_prm)
    for (prompt, steps), result in zip(ITEMS, got, strict=True):
        row = tokenize_row(tok, prompt, steps, [0.0] * len(steps), TokenizeSpec(max_length=None))
        expected = _manual(trained_prm, prompt, steps, list(row.positions), list(row.input_ids))
        assert result.scores == pytest.approx(expected, abs=1e-5)
        assert result.tokens == len(row.input_ids)
        assert result.note is None
    alone = PRMScorer(str(trained_prm), device="cpu", batch_size=1).score(ITEMS)
    for a, b in zip(alone, got, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)  # padding does not change a score


def test_steps_past_max_length_have_no_score(trained_prm: Path) -> None:
    full = PRMScorer(str(trained_prm), device="cpu").score(ITEMS[1:2])[0]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained_prm)
    row = tokenize_row(tok, ITEMS[1][0], ITEMS[1][1], [0.0] * 3, TokenizeSpec(max_length=None))
    cut = PRMScorer(str(trained_prm), device="cpu", max_length=row.positions[1] + 1).score(ITEMS[1:2])[0]
    assert cut.scores[:2] == pytest.approx(full.scores[:2], abs=1e-5)
    assert cut.scores[2] is None


def test_the_qwen_step_reward_format(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = write_qwen_style_prm(tiny_model_dir, tmp_path / "qwen-prm")
    scorer = PRMScorer(str(folder), format="qwen-step-reward", device="cpu", batch_size=2)
    got = scorer.score(ITEMS)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tag = tok.convert_tokens_to_ids("<extra_0>")
    for (prompt, steps), result in zip(ITEMS, got, strict=True):
        text = qwen_text(tok, prompt, steps)
        assert text.count("<extra_0>") == len(steps)
        assert "Please reason step by step" in text
        ids = tok(text, add_special_tokens=False)["input_ids"]
        positions = qwen_positions(ids, tag)
        assert len(positions) == len(steps)
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)[:, 1]
        assert result.scores == pytest.approx([float(probs[p]) for p in positions], abs=1e-5)
    tagged = scorer.score([("q", ["a <extra_0> b"])])[0]
    assert tagged.scores == (None,)
    assert tagged.note is not None
    assert "step tag" in tagged.note


def test_a_model_without_a_step_head_or_tag_is_refused(tiny_model_dir: Path, trained_prm: Path) -> None:
    with pytest.raises(ConfigError, match="no token-classification or process-reward head"):
        PRMScorer(str(tiny_model_dir), device="cpu")
    with pytest.raises(ConfigError, match="has no <extra_0> token"):
        PRMScorer(str(trained_prm), format="qwen-step-reward", device="cpu")
    with pytest.raises(ConfigError, match="cannot load"):
        PRMScorer(str(tiny_model_dir / "missing"), device="cpu")


def test_the_reading_comes_from_prmforge_prm_json(trained_prm: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(trained_prm, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoints")))
    meta: dict[str, Any] = json.loads((copy / PRM_META).read_text())
    meta["separator"], meta["tokenization"] = "\n", "trl"
    (copy / PRM_META).write_text(json.dumps(meta))
    scorer = PRMScorer(str(copy), device="cpu")
    assert (scorer.separator, scorer.tokenization) == ("\n", "trl")
    assert read_prm_meta(str(tmp_path)) == {}
    (copy / PRM_META).unlink()
    plain = PRMScorer(str(copy), device="cpu", separator="\n")
    assert (plain.separator, plain.tokenization) == ("\n", "prmforge")
    assert model_fingerprint(str(copy)) != model_fingerprint(str(trained_prm))
    assert model_fingerprint("Qwen/Qwen2.5-Math-PRM-7B") is None
