"""Near-duplicate removal (`split.near_dedup`): the pure functions, then builds that use it."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import committed, small_config

from prmforge.pipelines.config import BuildConfig, parse_config
from prmforge.pipelines.near_dedup import (
    Match,
    NearDuplicates,
    Signer,
    estimated_jaccard,
    jaccard,
    minhash_seed,
    shingles,
)
from prmforge.pipelines.runners.finalize import _key
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.config import NearDedupConfig, SplitConfig
from prmforge.schemas.records import PRMExample

FILLER = (
    "the farmer counts apples in the orchard every morning before the market opens and he writes "
    "each number down carefully in a small notebook so that nothing is lost"
)
A = ["We add 2 + 3 = 5 and " + FILLER, "then 5 * 4 = 20 in all"]
B = ["We add 2 + 3 = 5 and " + FILLER.replace("morning", "evening"), "then 5 * 4 = 20 in all"]
C = ["We add 2 + 3 = 5 quickly", "then 5 * 4 = 20"]


def _jaccard(a: list[str], b: list[str], size: int) -> Fraction:
    sa, sb = shingles(a, size), shingles(b, size)
    return Fraction(len(sa & sb), len(sa | sb))


# ---------------------------------------------------------------- shingles and exact Jaccard


def test_shingles_are_the_distinct_word_windows_across_steps() -> None:
    assert shingles(["a b c", "d"], 2) == {"a b", "b c", "c d"}  # the steps' text joined by a space
    assert shingles(["a  b\n", "\ta b"], 1) == {"a", "b"}  # whitespace of any kind splits words
    assert shingles(["a b a b a"], 2) == {"a b", "b a"}
    assert shingles(["x y"], 5) == {"x y"}  # fewer words than a shingle: one shingle of them all
    assert shingles(["x y z"], 3) == {"x y z"}
    assert shingles([], 3) == shingles(["", "  "], 3) == {""}
    with pytest.raises(ValueError, match="at least one word"):
        shingles(["a"], 0)


def test_exact_jaccard_of_hand_made_texts() -> None:
    assert jaccard({"a", "b", "c"}, {"b", "c", "d"}) == 0.5
    assert jaccard(set(), set()) == 1.0
    assert jaccard({"a"}, set()) == 0.0
    # A and B differ in one word of 38 distinct words; C shares only its arithmetic with A.
    assert _jaccard(A, B, 1) == Fraction(37, 39)
    assert _jaccard(A, B, 2) == Fraction(21, 23)
    assert _jaccard(A, B, 5) == Fraction(18, 23)  # one changed word touches 5 windows of 5 words
    assert _jaccard(A, C, 1) == Fraction(11, 39)


# ---------------------------------------------------------------- MinHash signatures


def test_signatures_are_seeded_and_deterministic() -> None:
    a = shingles(A, 1)
    first = Signer(128, 7).signature(a)
    assert first.dtype == np.uint64
    assert first.shape == (128,)
    assert np.array_equal(first, Signer(128, 7).signature(a))  # a fresh signer: the same permutations
    assert np.array_equal(first, Signer(128, 7).signature(sorted(a, reverse=True)))  # order is no matter
    assert not np.array_equal(first, Signer(128, 8).signature(a))
    assert minhash_seed(0) == minhash_seed(0) != minhash_seed(1)
    assert 0 <= minhash_seed(123) < 2**32


def test_the_signature_scheme_is_pinned() -> None:
    """datasketch's legacy scheme (the only one of 1.x; asked for by name on 2.x): these values are the
    same on datasketch 1.6.5 and 2.0.0, so near-dedup decisions do not move with the library."""
    values = Signer(16, 12345).signature({"a b c", "b c d"})
    assert [int(v) for v in values[:4]] == [397529509, 87930314, 3200122020, 2983528244]


def test_estimated_jaccard_follows_the_exact_one() -> None:
    signer = Signer(512, minhash_seed(0))

    def est(x: list[str], y: list[str], size: int) -> float:
        return estimated_jaccard(signer.signature(shingles(x, size)), signer.signature(shingles(y, size)))

    assert est(A, A, 5) == 1.0
    assert estimated_jaccard(signer.signature({"p q"}), signer.signature({"r s"})) == 0.0
    for x, y, size in ((A, B, 1), (A, B, 2), (A, B, 5), (A, C, 1)):
        assert abs(est(x, y, size) - float(_jaccard(x, y, size))) < 0.06
    with pytest.raises(ValueError, match="permutations"):
        estimated_jaccard(Signer(8, 0).signature({"a"}), signer.signature({"a"}))


# ---------------------------------------------------------------- the per-problem index


def test_a_near_duplicate_of_an_earlier_kept_row_of_its_problem_is_reported() -> None:
    index = NearDuplicates(0.8, Signer(256, minhash_seed(0)))
    size = 1
    assert index.check_text("p1", "a", A, size) is None  # first row: kept
    match = index.check_text("p1", "b", B, size)  # J = 37/39 = 0.95
    assert isinstance(match, Match)
    assert match.kept_id == "a"
    assert abs(match.estimate - 37 / 39) < 0.05
    assert index.check_text("p1", "c", C, size) is None  # J = 11/39: kept
    assert index.check_text("p2", "d", A, size) is None  # another problem: never compared
    assert index.check_text("p1", "e", A, size) == Match("a", 1.0)  # identical: estimate 1.0
    assert index.problems_held == 2
    index.forget("p1")
    assert index.problems_held == 1
    assert index.check_text("p1", "f", A, size) is None  # a forgotten problem starts afresh


def test_rows_are_compared_with_kept_rows_only_and_the_most_similar_is_named() -> None:
    words = [f"w{i}" for i in range(50)]
    a = [" ".join(words)]
    b = [" ".join(["x1", "x2", *words[2:]])]  # J(a, b) = 48/52
    c = [" ".join(["x1", "x2", "y1", "y2", *words[4:]])]  # J(b, c) = 48/52, J(a, c) = 46/54
    assert (_jaccard(a, b, 1), _jaccard(b, c, 1), _jaccard(a, c, 1)) == (
        Fraction(12, 13),
        Fraction(12, 13),
        Fraction(23, 27),
    )
    index = NearDuplicates(0.9, Signer(1024, minhash_seed(0)))
    assert index.check_text("p", "a", a, 1) is None
    assert index.check_text("p", "b", b, 1) is not None  # 0.92 >= 0.9: dropped, so not kept
    assert index.check_text("p", "c", c, 1) is None  # near b (dropped), not near a (0.85): kept
    # Two kept rows resemble a new one: the more similar is named (c: 50/52; a: 46/54).
    d = [" ".join(["x1", "x2", "y1", "y2", "z1", *words[4:]])]
    assert index.check_text("p", "d", d, 1) == Match("c", pytest.approx(_est(index, c, d)))


def _est(index: NearDuplicates, x: list[str], y: list[str]) -> float:
    s = index.signer
    return estimated_jaccard(s.signature(shingles(x, 1)), s.signature(shingles(y, 1)))


def test_the_threshold_is_inclusive() -> None:
    index = NearDuplicates(1.0, Signer(64, 0))
    assert index.check_text("p", "a", ["one two three"], 1) is None
    assert index.check_text("p", "b", ["three two one"], 1) == Match("a", 1.0)  # same set: 1.0 >= 1.0


def test_the_config_is_off_by_default_and_checked() -> None:
    assert SplitConfig().near_dedup is None
    assert SplitConfig(near_dedup=NearDedupConfig()).near_dedup == NearDedupConfig(
        threshold=0.9, num_perm=128, shingle=5
    )
    # Off, the key is not even dumped: configs that do not use it keep their config hash.
    assert "near_dedup" not in SplitConfig().model_dump()
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"num_perm": 4}, {"shingle": 0}, {"x": 1}):
        with pytest.raises(ValueError, match=r"near_dedup"):
            SplitConfig.model_validate({"near_dedup": bad})


# ---------------------------------------------------------------- builds


def _rollouts_build(tmp_path: Path, rows: list[dict[str, Any]], near: dict[str, Any] | None) -> BuildConfig:
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    split: dict[str, Any] = {} if near is None else {"near_dedup": near}
    return parse_config(
        {
            "name": "near",
            "inputs": [
                {
                    "kind": "rollouts",
                    "path": str(path),
                    "columns": {"question": "question", "steps": "steps", "answer": "answer"},
                }
            ],
            "annotate": [{"kind": "equations"}],
            "split": split,
            # One row per shard: imported rollouts of one question share a problem id, and the rows of
            # the problem lie in several shards (the case that keeps a problem's signatures longest).
            "runner": {"workers": 0, "shard_size": 1},
        }
    )


HAND_MADE = [
    {"question": "Q1: how many apples?", "steps": A, "answer": "20"},  # kept
    {"question": "Q2: how many pears?", "steps": A, "answer": "20"},  # the same text, another problem
    {"question": "Q1: how many apples?", "steps": B, "answer": "20"},  # J(A, B) = 37/39: dropped
    {"question": "Q1: how many apples?", "steps": C, "answer": "20"},  # J(A, C) = 11/39: kept
    {"question": "Q2: how many pears?", "steps": B, "answer": "20"},  # near Q2's A: dropped
]


def test_near_duplicates_of_one_problem_are_dropped_never_across_problems(tmp_path: Path) -> None:
    config = _rollouts_build(tmp_path, HAND_MADE, {"threshold": 0.8, "num_perm": 256, "shingle": 1})
    result = LocalRunner().run(config, tmp_path / "b")
    assert result.problems == ()
    manifest = result.manifest
    assert manifest.num_shards == 5
    assembled: list[PRMExample] = committed(tmp_path / "b", "stages/assemble/", "example")
    assert [e.first_error for e in assembled] == [-1] * 5  # every step's arithmetic checks
    assert manifest.dedup == {"repeated_rows": 0, "conflicting_labels": 0, "dropped": 0,
                              "duplicate_questions": 0, "clashing_ids": 0, "near_duplicates": 2}  # fmt: skip
    written: list[PRMExample] = committed(tmp_path / "b", "data/", "example")
    assert written == [assembled[0], assembled[1], assembled[3]]
    dropped: list[QuarantineEntry] = committed(tmp_path / "b", "stages/dedup/", "quarantine")
    assert [(q.index, q.preview, q.field) for q in dropped] == [
        (2, assembled[2].example_id, "completions"),
        (4, assembled[4].example_id, "completions"),
    ]
    first = f"near-duplicate of row {assembled[0].example_id} (estimated Jaccard "
    assert dropped[0].reason.startswith(first)
    assert dropped[0].reason.endswith(" >= 0.8)")
    assert dropped[1].reason.startswith(f"near-duplicate of row {assembled[1].example_id} ")
    assert manifest.stages["dedup"].excluded == 2
    assert manifest.stages["write"].rows_out == 3
    assert summarize(tmp_path / "b")["dedup"]["near_duplicates"] == 2
    card = (tmp_path / "b" / "README.md").read_text()
    from importlib.metadata import version

    assert (
        "- Near duplicates (`split.near_dedup`): 2 rows dropped whose estimated Jaccard\n  with an "
        "earlier kept row of the same problem is at least 0.8 (MinHash of word\n  1-shingles of the "
        f"completions, 256 permutations, datasketch {version('datasketch')})."
    ) in card


def test_without_near_dedup_the_same_rows_are_all_kept_and_the_card_says_so(tmp_path: Path) -> None:
    result = LocalRunner().run(_rollouts_build(tmp_path, HAND_MADE, None), tmp_path / "b")
    assert "near_duplicates" not in result.manifest.dedup
    assert len(committed(tmp_path / "b", "data/", "example")) == 5
    assert "- Near duplicates: kept (`split.near_dedup` off)." in (tmp_path / "b" / "README.md").read_text()


def _restated(examples: list[PRMExample], exact: bool, near: NearDedupConfig, seed: int) -> list[str]:
    """The ids dedup keeps, restated from the pure functions: exact repeats, then per-problem MinHash."""
    index = NearDuplicates(near.threshold, Signer(near.num_perm, minhash_seed(seed)))
    seen, kept = set(), []
    for e in examples:
        key = _key(e)
        repeat = key in seen
        seen.add(key)
        if exact and repeat:
            continue
        if index.check_text(e.problem_id, e.example_id, e.completions, near.shingle) is None:
            kept.append(e.example_id)
    return kept


@pytest.mark.parametrize("exact", [True, False], ids=["with-exact-dedup", "near-only"])
def test_a_generated_build_drops_what_the_rule_restated_drops(tmp_path: Path, exact: bool) -> None:
    near = NearDedupConfig(threshold=0.6, shingle=3)
    split = {"dedup": exact, "validation": 0.3, "near_dedup": near.model_dump()}
    result = LocalRunner().run(small_config(split=split), tmp_path / "b")
    assembled: list[PRMExample] = committed(tmp_path / "b", "stages/assemble/", "example")
    kept = _restated(assembled, exact, near, 11)
    written: list[PRMExample] = committed(tmp_path / "b", "data/", "example")
    assert sorted(e.example_id for e in written) == sorted(kept)
    dedup = result.manifest.dedup
    # Seed-dependent pins (small_config, seed 11): 12 exact repeats; near duplicates beyond them.
    assert (dedup["repeated_rows"], dedup["dropped"], dedup["near_duplicates"]) == (
        (12, 12, 3) if exact else (12, 0, 15)
    )
    assert len(written) == 40 - dedup["dropped"] - dedup["near_duplicates"]
    # A row keeps its split; a question is in one split.
    split_of = {e.example_id: e.split for e in assembled}
    assert all(split_of[e.example_id] == e.split for e in written)
    splits_per_prompt: dict[str, set[str]] = {}
    for e in written:
        splits_per_prompt.setdefault(e.prompt, set()).add(e.split)
    assert all(len(s) == 1 for s in splits_per_prompt.values())


def test_the_result_does_not_depend_on_shard_packing(tmp_path: Path) -> None:
    split = {"validation": 0.3, "near_dedup": {"threshold": 0.6, "shingle": 3}}
    hashes = {
        size: LocalRunner().run(
            small_config(split=split, runner={"workers": 0, "shard_size": size}), tmp_path / f"s{size}"
        )
        for size in (1, 3, 5)
    }
    assert len({r.content_hash for r in hashes.values()}) == 1
    assert len({json.dumps(r.manifest.dedup, sort_keys=True) for r in hashes.values()}) == 1
    assert Manifest.read(tmp_path / "s1").num_shards == 20
