"""Label placement: a step's label on its separator's last token, -100 elsewhere, cut steps unlabelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from prmforge.training.tokenize import IGNORE, TokenizeSpec, place_labels, tokenize_row

X = IGNORE


def test_labels_sit_on_the_last_separator_token() -> None:
    row = place_labels([5, 6], [[7], [8, 9]], [1, 2], [1.0, 0.0])
    assert row.input_ids == (5, 6, 7, 1, 2, 8, 9, 1, 2)
    assert row.labels == (X, X, X, X, 1.0, X, X, X, 0.0)
    assert row.positions == (4, 8)


def test_soft_targets_stay_floats() -> None:
    row = place_labels([5], [[7], [8]], [1], [0.7, 0.25])
    assert row.labels == (X, X, 0.7, X, 0.25)


@pytest.mark.parametrize(
    ("max_length", "max_completion_length", "ids", "labels", "positions"),
    [
        (None, None, (5, 6, 7, 1, 8, 9, 1), (X, X, X, 1.0, X, X, 0.0), (3, 6)),
        (7, None, (5, 6, 7, 1, 8, 9, 1), (X, X, X, 1.0, X, X, 0.0), (3, 6)),
        (6, None, (5, 6, 7, 1), (X, X, X, 1.0), (3,)),  # step 1 does not fit: dropped whole
        (4, None, (5, 6, 7, 1), (X, X, X, 1.0), (3,)),
        (3, None, (5, 6), (X, X), ()),  # nothing fits: no label at all
        (None, 4, (5, 6, 7, 1), (X, X, X, 1.0), (3,)),
        (None, 1, (5, 6), (X, X), ()),
    ],
)
def test_prmforge_truncation_drops_whole_steps(
    max_length: int | None,
    max_completion_length: int | None,
    ids: tuple[int, ...],
    labels: tuple[float, ...],
    positions: tuple[int, ...],
) -> None:
    row = place_labels(
        [5, 6],
        [[7], [8, 9]],
        [1],
        [1.0, 0.0],
        max_length=max_length,
        max_completion_length=max_completion_length,
    )
    assert (row.input_ids, row.labels, row.positions) == (ids, labels, positions)


@pytest.mark.parametrize(
    ("max_length", "max_completion_length", "ids", "labels", "positions"),
    [
        (6, None, (5, 6, 7, 1, 8, 9), (X, X, X, 1.0, X, X), (3,)),  # step 1 cut: its tokens stay, no label
        (3, None, (5, 6, 7), (X, X, X), ()),
        (None, 3, (5, 6, 7, 1, 8), (X, X, X, 1.0, X), (3,)),
        (None, 2, (5, 6, 7, 1), (X, X, X, 1.0), (3,)),
    ],
)
def test_trl_truncation_cuts_tokens_and_never_misplaces_a_label(
    max_length: int | None,
    max_completion_length: int | None,
    ids: tuple[int, ...],
    labels: tuple[float, ...],
    positions: tuple[int, ...],
) -> None:
    row = place_labels(
        [5, 6],
        [[7], [8, 9]],
        [1],
        [1.0, 0.0],
        mode="trl",
        max_length=max_length,
        max_completion_length=max_completion_length,
    )
    assert (row.input_ids, row.labels, row.positions) == (ids, labels, positions)


@pytest.mark.parametrize("mode", ["prmforge", "trl"])
@pytest.mark.parametrize("limit", range(3, 30))
def test_every_kept_label_is_its_own_steps_on_its_separator(mode: str, limit: int) -> None:
    """Whatever the cut, labels are exactly at ``positions``, each the label of step k, on a separator."""
    steps = [[10, 11], [12], [13, 14, 15], [16], [17, 18]]
    targets = [1.0, 0.0, 1.0, 0.0, 1.0]
    sep = [1, 2]
    row = place_labels([5, 6, 7], steps, sep, targets, mode=mode, max_length=limit)  # type: ignore[arg-type]
    assert [i for i, v in enumerate(row.labels) if v != IGNORE] == list(row.positions)
    for k, p in enumerate(row.positions):
        assert row.labels[p] == targets[k]
        assert row.input_ids[p - 1 : p + 1] == (1, 2)
        assert p == 3 + sum(len(s) + 2 for s in steps[: k + 1]) - 1
    assert len(row.input_ids) <= limit


def test_refuses_a_separator_without_tokens_and_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        place_labels([1], [[2]], [], [1.0])
    with pytest.raises(ValueError, match="2 steps for 1 labels"):
        place_labels([1], [[2], [3]], [4], [1.0])


def test_steps_are_tokenised_one_by_one_with_the_separator_appended(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt, steps = "Ann has 3 apples.", ["She buys 2 more: 3+2 = 5.", "The answer is 5."]
    row = tokenize_row(tok, prompt, steps, [1.0, 0.0], TokenizeSpec(separator="\n\n", max_length=None))
    sep = tok.encode("\n\n", add_special_tokens=False)
    expected = tok(prompt)["input_ids"]
    for step in steps:
        expected += tok(step, add_special_tokens=False)["input_ids"] + sep
    assert list(row.input_ids) == expected
    assert [row.input_ids[p] for p in row.positions] == [sep[-1], sep[-1]]


def test_the_prompt_carries_the_tokenizers_own_special_tokens_in_prmforge_mode(
    bos_tokenizer_dir: Path,
) -> None:
    """prmforge mode: add_special_tokens=True (this tokenizer adds none); trl mode: the BOS prepended."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_tokenizer_dir)
    spec = TokenizeSpec(max_length=None)
    ours = tokenize_row(tok, "Q?", ["a"], [1.0], spec)
    trl = tokenize_row(tok, "Q?", ["a"], [1.0], TokenizeSpec(mode="trl", max_length=None))
    assert trl.input_ids == (tok.bos_token_id, *ours.input_ids)
    assert trl.positions == tuple(p + 1 for p in ours.positions)
