"""TRL 1.13 interop: our trl mode is PRMTrainer.tokenize_row exactly, and PRMTrainer trains our export.

Our default (prmforge) mode differs from TRL's on purpose in two ways, each tested here: the prompt
gets the tokenizer's own special tokens (TRL: none, then the BOS if the tokenizer has one), and a step
cut by max_length is dropped whole (TRL keeps its leading tokens, unlabelled). Where nothing is cut and
the tokenizer adds what TRL adds, the two modes give the same ids and labels.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from prmforge.training.tokenize import IGNORE, TokenizeSpec, tokenize_row

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _trl_rows(build_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    from prmforge.pipelines.export import export_jsonl

    path = tmp_path / "train.jsonl"
    assert export_jsonl(build_dir, "trl", path) > 5
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trl_tokenize(
    row: dict[str, Any], tok: Any, sep: str, max_length: int | None, max_completion: int | None
) -> Any:
    from trl.experimental.prm import PRMTrainer

    return PRMTrainer.tokenize_row(
        row,
        tokenizer=tok,
        step_separator=sep,
        max_length=max_length,
        max_completion_length=max_completion,
        train_on_last_step_only=False,
        is_eval=False,
    )


@pytest.mark.parametrize("tokenizer", ["tiny", "bos"])
@pytest.mark.parametrize("separator", ["\n", "\n\n"])
@pytest.mark.parametrize(("max_length", "max_completion"), [(None, None), (48, None), (None, 20), (60, 30)])
def test_trl_mode_reproduces_tokenize_row_exactly(
    build_dir: Path,
    tiny_model_dir: Path,
    bos_tokenizer_dir: Path,
    tmp_path: Path,
    tokenizer: str,
    separator: str,
    max_length: int | None,
    max_completion: int | None,
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir if tokenizer == "tiny" else bos_tokenizer_dir)
    spec = TokenizeSpec(separator, "trl", max_length, max_completion)
    for row in _trl_rows(build_dir, tmp_path):
        theirs = _trl_tokenize(row, tok, separator, max_length, max_completion)
        ours = tokenize_row(tok, row["prompt"], row["completions"], [float(x) for x in row["labels"]], spec)
        assert list(ours.input_ids) == theirs["input_ids"]
        assert [int(x) for x in ours.labels] == theirs["labels"]
        assert [i for i, x in enumerate(theirs["labels"]) if x != -100] == list(ours.positions)


def test_prmforge_mode_equals_trl_mode_when_nothing_is_cut_and_no_bos(
    build_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for row in _trl_rows(build_dir, tmp_path):
        labels = [float(x) for x in row["labels"]]
        ours = tokenize_row(tok, row["prompt"], row["completions"], labels, TokenizeSpec(max_length=None))
        theirs = _trl_tokenize(row, tok, "\n\n", None, None)
        assert (list(ours.input_ids), [int(x) for x in ours.labels]) == (
            theirs["input_ids"],
            theirs["labels"],
        )


def test_prmforge_mode_differs_from_trl_on_purpose(
    build_dir: Path, bos_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """No BOS unless the tokenizer adds one; a cut step leaves no tokens (TRL leaves them unlabelled)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_tokenizer_dir)
    rows = _trl_rows(build_dir, tmp_path)
    row = max(rows, key=lambda r: len(r["completions"]))
    labels = [float(x) for x in row["labels"]]
    full = tokenize_row(tok, row["prompt"], row["completions"], labels, TokenizeSpec(max_length=None))
    limit = full.positions[1] + 3  # cuts step 2 a few tokens in (one token longer than TRL's prompt)
    ours = tokenize_row(tok, row["prompt"], row["completions"], labels, TokenizeSpec(max_length=limit))
    theirs = _trl_tokenize(row, tok, "\n\n", limit, None)
    assert theirs["input_ids"][0] == tok.bos_token_id
    assert ours.input_ids[0] != tok.bos_token_id
    assert ours.input_ids == full.input_ids[: full.positions[1] + 1]  # ends at step 1's separator
    assert len(theirs["input_ids"]) == limit  # TRL keeps the cut step's first tokens
    assert [x for x in ours.labels if x != IGNORE] == labels[:2]
    assert [x for x in theirs["labels"] if x != -100] == [int(x) for x in labels[:2]]


def test_trl_truncates_soft_labels_and_we_do_not(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = {"prompt": "Q", "completions": ["a", "b"], "labels": [0.7, 1.0]}
    theirs = _trl_tokenize(row, tok, "\n", None, None)
    ours = tokenize_row(tok, "Q", ["a", "b"], [0.7, 1.0], TokenizeSpec("\n", "trl", None))
    assert [x for x in theirs["labels"] if x != -100] == [0, 1]  # int(0.7) == 0
    assert [x for x in ours.labels if x != IGNORE] == [0.7, 1.0]


@pytest.mark.slow
def test_trl_prm_trainer_trains_our_export_unchanged(
    build_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from trl.experimental.prm import PRMConfig, PRMTrainer

    rows = _trl_rows(build_dir, tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=2)
    args = PRMConfig(
        output_dir=str(tmp_path / "trl-out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        step_separator="\n\n",
        max_length=256,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
    )
    trainer = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    first = trainer.train_dataset[0]
    ours = tokenize_row(
        tok,
        rows[0]["prompt"],
        rows[0]["completions"],
        [float(x) for x in rows[0]["labels"]],
        TokenizeSpec("\n\n", "trl", 256),
    )
    assert (first["input_ids"], first["labels"]) == (list(ours.input_ids), [int(x) for x in ours.labels])
    output = trainer.train()
    assert trainer.state.global_step == 2
    assert math.isfinite(output.training_loss)
    assert output.training_loss > 0
