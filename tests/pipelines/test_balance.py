"""Positive/negative balance (`split.balance`): the pure selection, then builds that use it, their
resume, and that changing only the global settings reruns only the global stages."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import committed, small_config
from typer.testing import CliRunner

from prmforge.pipelines import tables
from prmforge.pipelines.balance import (
    BalanceReport,
    Candidate,
    SplitBalance,
    order_key,
    select,
    share,
    units,
)
from prmforge.pipelines.cli import app
from prmforge.pipelines.graph import compose
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, Marker
from prmforge.pipelines.runners.finalize import Finalizer, Settings
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.sources import open_inputs, parsers_of
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.config import BalanceConfig, SplitConfig
from prmforge.schemas.records import PRMExample


def _rows(*units_: tuple[int, int]) -> list[Candidate]:
    """Candidates in the order given (their keys are their positions)."""
    return [Candidate((i, f"r{i}"), p, n) for i, (p, n) in enumerate(units_)]


# ---------------------------------------------------------------- units and keys


def test_units_of_a_row() -> None:
    assert units((True, True, True), -1, "rollout") == (1, 0)
    assert units((True, False, False), 1, "rollout") == (0, 1)
    assert units((False,), 0, "rollout") == (0, 1)
    assert units((True, True, False), 2, "step") == (2, 1)
    assert units((True, True), -1, "step") == (2, 0)
    assert units((), -1, "step") == (0, 0)


def test_order_keys_are_seeded_hashes_of_the_example_id() -> None:
    assert order_key(0, "e1") == order_key(0, "e1")
    assert order_key(0, "e1") != order_key(1, "e1")
    assert order_key(0, "e1")[1] == "e1"  # the id breaks a (never seen) tie
    assert 0 <= order_key(5, "x")[0] < 2**63


# ---------------------------------------------------------------- select: rollout level


def test_a_positive_majority_drops_the_positives_with_the_smallest_keys() -> None:
    rows = [Candidate(order_key(3, f"e{i}"), *((1, 0) if i < 8 else (0, 1))) for i in range(10)]
    out = select(rows, 0.5)
    expected = sorted(range(8), key=lambda i: rows[i].key)[:6]
    assert out.dropped == tuple(sorted(expected))
    assert (out.positive_before, out.negative_before, out.positive, out.negative) == (8, 2, 2, 2)
    assert out.majority == "positive"
    assert (out.share_before, out.share) == (0.8, 0.5)


@pytest.mark.parametrize(
    ("target", "kept_positives"),
    [(0.5, 2), (0.6, 3), (0.7, 5), (0.75, 6), (0.79, 8), (0.2, 1), (0.1, 0)],
)
def test_the_share_comes_as_close_to_the_target_as_whole_rows_allow(
    target: float, kept_positives: int
) -> None:
    """8 positive and 2 negative rollouts: the kept positives k minimise |k/(k+2) - target| (0.7: 5/7 =
    0.714 beats 4/6 = 0.667; 0.79: 0.8 is closer than 7/9 = 0.778, nothing dropped; 0.2: 1/3 beats
    0/2; 0.1: 0/2 beats 1/3, so every positive goes)."""
    out = select(_rows(*[(1, 0)] * 8, (0, 1), (0, 1)), target)
    assert out.positive == kept_positives
    assert out.negative == 2
    assert out.dropped == tuple(range(8 - kept_positives))  # keys are positions: the first ones go


def test_a_negative_majority_drops_negatives() -> None:
    out = select(_rows((0, 1), (1, 0), (0, 1), (0, 1), (0, 1), (0, 1)), 0.5)
    assert out.majority == "negative"
    assert out.dropped == (0, 2, 3, 4)
    assert (out.positive, out.negative) == (1, 1)


def test_nothing_is_dropped_at_the_target_with_one_class_or_no_rows() -> None:
    at_target = select(_rows((1, 0), (0, 1)), 0.5)
    assert (at_target.dropped, at_target.majority) == ((), None)
    one_class = select(_rows((1, 0), (1, 0), (1, 0)), 0.5)  # no negatives to balance against
    assert (one_class.dropped, one_class.majority, one_class.share) == ((), "positive", 1.0)
    empty = select([], 0.5)
    assert (empty.dropped, empty.positive, empty.negative, empty.majority, empty.share) == (
        (), 0, 0, None, None,
    )  # fmt: skip
    single = select(_rows((3, 1)), 0.5)  # the last row of a split is never dropped
    assert single.dropped == ()


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5])
def test_a_target_outside_the_open_interval_is_refused(target: float) -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        select(_rows((1, 0)), target)


# ---------------------------------------------------------------- select: step level


def test_step_level_takes_rows_above_the_target_in_key_order() -> None:
    # 10 positive and 4 negative step labels (0.714); rows above 0.5: r0 (1.0), r1 (1.0), r4 (0.8).
    # r2 sits at the target and r3 below it: never candidates.
    units_ = [(3, 0), (2, 0), (1, 1), (0, 2), (4, 1)]
    first = select(
        [Candidate((k, str(i)), *u) for i, (u, k) in enumerate(zip(units_, [1, 2, 0, 0, 0], strict=True))],
        0.5,
    )
    # r4 (key 0) goes (6/9), then r0 (3/6 = 0.5): at the target, stop.
    assert first.dropped == (0, 4)
    assert (first.positive, first.negative) == (3, 3)
    other = select(
        [Candidate((k, str(i)), *u) for i, (u, k) in enumerate(zip(units_, [1, 0, 0, 0, 2], strict=True))],
        0.5,
    )
    # r1 goes (8/12), r0 goes (5/9 = 0.556), r4 would leave 1/4 = 0.25 (farther): kept.
    assert other.dropped == (0, 1)
    assert (other.positive, other.negative) == (5, 4)


def test_a_row_that_would_overshoot_is_skipped_and_later_rows_still_go() -> None:
    # 12 / 13 = 0.923 toward 0.8: dropping the big row leaves 2/3 = 0.667 (farther); the small ones help.
    out = select(_rows((10, 0), (1, 0), (1, 0), (0, 1)), 0.8)
    assert out.dropped == (1, 2)
    assert (out.positive, out.negative) == (10, 1)


def test_rows_without_steps_are_never_candidates() -> None:
    out = select(_rows((0, 0), (2, 0), (0, 1), (0, 1)), 0.5)
    assert out.dropped == ()  # (2, 0) alone would leave 0/2: farther; (0, 0) changes nothing


def test_the_choice_depends_on_the_rows_and_the_seed_never_on_their_order() -> None:
    gen = random.Random(4)
    ids = [f"ex-{i}" for i in range(200)]
    counts = {i: (gen.randint(0, 5), gen.randint(0, 3)) for i in ids}

    def dropped_ids(order: list[str], seed: int, target: float) -> set[str]:
        rows = [Candidate(order_key(seed, i), *counts[i]) for i in order]
        return {order[j] for j in select(rows, target).dropped}

    for target in (0.3, 0.5, 0.8):
        base = dropped_ids(ids, 1, target)
        assert base
        shuffled = ids[:]
        gen.shuffle(shuffled)
        assert dropped_ids(shuffled, 1, target) == base
    assert dropped_ids(ids, 2, 0.5) != dropped_ids(ids, 1, 0.5)


def test_exact_comparisons_with_a_target_that_is_not_a_round_binary_number() -> None:
    # 0.1 as a double is slightly above 1/10: 1 positive of 10 is below it and 2 of 10 above.
    out = select(_rows(*[(1, 0)] * 9, *[(0, 1)] * 9), 0.1)
    assert (out.positive, out.negative) == (1, 9)  # 1/10 exactly: nothing left to improve


# ---------------------------------------------------------------- the report


def test_the_report_round_trips_through_the_integer_summary() -> None:
    report = BalanceReport(
        "step",
        0.35,
        (SplitBalance("train", 40, 10, 14, 10, 7), SplitBalance("test", 0, 0, 0, 0, 0)),
    )
    summary = report.as_summary()
    assert summary == {
        "balance_dropped": 7,
        "balance_target_ppm": 350000,
        "balance_by_step": 1,
        "balance_train_positive_before": 40,
        "balance_train_negative_before": 10,
        "balance_train_positive": 14,
        "balance_train_negative": 10,
        "balance_train_dropped": 7,
        "balance_train_share_ppm": 583333,
        "balance_test_positive_before": 0,
        "balance_test_negative_before": 0,
        "balance_test_positive": 0,
        "balance_test_negative": 0,
        "balance_test_dropped": 0,
        "balance_test_share_ppm": -1,
    }
    back = BalanceReport.from_summary({"repeated_rows": 3, **summary})
    assert back is not None
    assert back.unit == "step"
    assert back.target == 0.35
    assert [s.split for s in back.splits] == ["train", "test"]  # train, validation, test order
    assert back.splits == report.splits
    assert BalanceReport.from_summary({"repeated_rows": 3}) is None
    assert report.as_json()["splits"]["train"] == {
        "positive_before": 40, "negative_before": 10, "positive": 14, "negative": 10, "dropped": 7,
        "share_before": 0.8, "share": 0.5833,
    }  # fmt: skip
    assert report.as_json()["splits"]["test"]["share"] is None
    assert share(0, 0) is None


def test_the_config_is_off_by_default_and_checked() -> None:
    assert SplitConfig().balance is None
    assert "balance" not in SplitConfig().model_dump()  # configs that do not use it keep their hash
    assert SplitConfig(balance=BalanceConfig()).balance == BalanceConfig(
        unit="rollout", target=0.5, splits=["train"]
    )
    for bad in (
        {"target": 0.0},
        {"target": 1.0},
        {"unit": "token"},
        {"splits": []},
        {"splits": ["dev"]},
        {"splits": ["train", "train"]},
    ):
        with pytest.raises(ValueError, match=r"balance"):
            SplitConfig.model_validate({"balance": bad})


# ---------------------------------------------------------------- builds


def _examples(root: Path, prefix: str) -> list[PRMExample]:
    examples: list[PRMExample] = committed(root, prefix, "example")
    return examples


def _expected(examples: list[PRMExample], config: BalanceConfig, seed: int) -> set[str]:
    """The ids balancing drops, restated per split from the pure functions."""
    out: set[str] = set()
    for split in config.splits:
        rows = [e for e in examples if e.split == split]
        candidates = [
            Candidate(order_key(seed, e.example_id), *units(e.labels, e.first_error, config.unit))
            for e in rows
        ]
        out |= {rows[i].example_id for i in select(candidates, config.target).dropped}
    return out


def _by_split(examples: list[PRMExample]) -> list[PRMExample]:
    """Rows in the order the data files hold them: by file name (test, train, validation), then row."""
    return sorted(examples, key=lambda e: e.split)  # stable: shard order, then row order, within a split


def _positive(examples: list[PRMExample], unit: str) -> tuple[int, int]:
    if unit == "rollout":
        pos = sum(1 for e in examples if e.first_error == -1)
        return pos, len(examples) - pos
    steps = sum(len(e.labels) for e in examples)
    pos = sum(sum(e.labels) for e in examples)
    return pos, steps - pos


def test_rollout_balance_of_train_drops_the_majority_and_leaves_validation_alone(tmp_path: Path) -> None:
    root = tmp_path / "b"
    result = LocalRunner().run(small_config(split={"validation": 0.3, "balance": {}}), root)
    assembled = _examples(root, "stages/assemble/")
    written = _examples(root, "data/")
    dropped_ids = _expected(assembled, BalanceConfig(), 11)
    assert _by_split([e for e in assembled if e.example_id not in dropped_ids]) == written
    # Seed-dependent pins (small_config, seed 11): train had 17 positive and 7 negative rollouts.
    dedup = result.manifest.dedup
    assert {k: v for k, v in dedup.items() if k.startswith("balance")} == {
        "balance_dropped": 10, "balance_target_ppm": 500000, "balance_by_step": 0,
        "balance_train_positive_before": 17, "balance_train_negative_before": 7,
        "balance_train_positive": 7, "balance_train_negative": 7, "balance_train_dropped": 10,
        "balance_train_share_ppm": 500000,
    }  # fmt: skip
    train = [e for e in written if e.split == "train"]
    assert _positive(train, "rollout") == (7, 7)
    assert all(e.first_error == -1 for e in assembled if e.example_id in dropped_ids)  # the majority
    validation = [e for e in assembled if e.split == "validation"]
    assert [e for e in written if e.split == "validation"] == validation  # not balanced: untouched
    assert result.manifest.splits == {"train": 14, "validation": 16, "test": 0}
    # Balancing drops rows and never moves one: each kept row has its split, each question one split.
    split_of = {e.example_id: e.split for e in assembled}
    assert all(split_of[e.example_id] == e.split for e in written)
    splits_of: dict[str, set[str]] = {}
    for e in assembled:
        splits_of.setdefault(e.problem_id, set()).add(e.split)
    assert all(len(s) == 1 for s in splits_of.values())
    # Every dropped row is listed with its reason.
    entries: list[QuarantineEntry] = committed(root, "stages/dedup/", "quarantine")
    assert {q.preview for q in entries} == dropped_ids
    assert {q.reason for q in entries} == {
        "balance: a positive row of train dropped toward a positive rollout share of 0.5"
    }
    assert result.manifest.stages["dedup"].excluded == 10
    # The summary, the card and `prmforge stats` show it.
    assert summarize(root)["balance"] == {
        "unit": "rollout", "target": 0.5, "dropped": 10,
        "splits": {"train": {"positive_before": 17, "negative_before": 7, "positive": 7, "negative": 7,
                             "dropped": 10, "share_before": 0.7083, "share": 0.5}},
    }  # fmt: skip
    card = (root / "README.md").read_text()
    assert (
        "- Positive/negative balance (`split.balance`, rollout level): target positive share 0.5;\n"
        "  rows of the majority class dropped in the order of a seeded hash of `example_id` (a row never\n"
        "  changes split).\n"
        "  - train: 0.5000 (7 positive / 7 negative rollouts), from 0.7083 (17 / 7); 10 rows dropped.\n"
    ) in card
    shown = CliRunner().invoke(app, ["stats", str(root)])
    assert shown.exit_code == 0, shown.output
    assert "balanced train (rollout share, target 0.5)" in shown.output
    assert "0.7083 -> 0.5000 (10 rows dropped)" in shown.output


def test_step_balance_of_two_splits_after_exact_and_near_dedup(tmp_path: Path) -> None:
    config = BalanceConfig(unit="step", target=0.6, splits=["validation", "train"])
    split = {"validation": 0.3, "dedup": True, "near_dedup": {"threshold": 0.6, "shingle": 3},
             "balance": config.model_dump()}  # fmt: skip
    root = tmp_path / "b"
    result = LocalRunner().run(small_config(split=split), root)
    assembled = _examples(root, "stages/assemble/")
    entries: list[QuarantineEntry] = committed(root, "stages/dedup/", "quarantine")
    by_dedup = {q.preview for q in entries if not q.reason.startswith("balance:")}
    after_dedup = [e for e in assembled if e.example_id not in by_dedup]
    dropped_ids = _expected(after_dedup, config, 11)
    written = _examples(root, "data/")
    assert _by_split([e for e in after_dedup if e.example_id not in dropped_ids]) == written
    dedup = result.manifest.dedup
    assert dedup["balance_dropped"] == len(dropped_ids) == len(assembled) - len(by_dedup) - len(written)
    assert dedup["dropped"] + dedup["near_duplicates"] == len(by_dedup)
    assert dedup["balance_by_step"] == 1
    for name in ("train", "validation"):
        rows = [e for e in written if e.split == name]
        before = [e for e in after_dedup if e.split == name]
        assert (dedup[f"balance_{name}_positive"], dedup[f"balance_{name}_negative"]) == _positive(
            rows, "step"
        )
        assert (dedup[f"balance_{name}_positive_before"], dedup[f"balance_{name}_negative_before"]) == (
            _positive(before, "step")
        )
        pos, neg = _positive(rows, "step")
        assert dedup[f"balance_{name}_share_ppm"] == round(pos / (pos + neg) * 1_000_000)
    card = (root / "README.md").read_text()
    assert "- Positive/negative balance (`split.balance`, step level): target positive share 0.6;" in card
    assert card.index("  - train: ") < card.index("  - validation: ")  # split order, not the config's
    assert "negative step labels), from " in card


def test_balance_does_not_depend_on_shard_packing(tmp_path: Path) -> None:
    split = {"validation": 0.3, "balance": {"unit": "step", "splits": ["train", "validation"]}}
    results = [
        LocalRunner().run(
            small_config(split=split, runner={"workers": 0, "shard_size": size}), tmp_path / f"s{size}"
        )
        for size in (1, 3, 5)
    ]
    assert len({r.content_hash for r in results}) == 1
    assert len({json.dumps(r.manifest.dedup, sort_keys=True) for r in results}) == 1
    assert [r.manifest.num_shards for r in results] == [20, 7, 5]


def test_rerunning_a_balanced_build_is_a_noop(tmp_path: Path) -> None:
    split = {"balance": {"unit": "rollout"}, "near_dedup": {}}
    first = LocalRunner().run(small_config(split=split), tmp_path / "b")
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()}
    dedup_marker = BuildDir(tmp_path / "b").marker_file("dedup", GLOBAL).read_bytes()
    events: list[StageEvent] = []
    second = LocalRunner(events.append).run(small_config(split=split), tmp_path / "b")
    assert (second.shards_run, second.content_hash) == (0, first.content_hash)
    assert len(events) == 7
    assert all(e.resumed for e in events)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()} == files
    assert BuildDir(tmp_path / "b").marker_file("dedup", GLOBAL).read_bytes() == dedup_marker


def _markers(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "markers").rglob("*.json")}


def test_changing_only_near_dedup_or_balance_reruns_only_the_global_stages(tmp_path: Path) -> None:
    """The shard stages' hashes leave out `split.dedup`, `near_dedup`, `balance` and `rows_per_file`;
    the global hash covers them. So with new settings the global stages rerun over the committed
    shards, and nothing else does."""
    root = tmp_path / "b"
    base = small_config(split={"validation": 0.3})
    LocalRunner().run(base, root)
    changed = small_config(
        split={"validation": 0.3, "near_dedup": {"threshold": 0.6, "shingle": 3}, "balance": {"unit": "step"}}
    )
    old_graph = compose(base, parsers_of(open_inputs(base)))
    graph = compose(changed, parsers_of(open_inputs(changed)))
    assert graph.hashes == old_graph.hashes
    assert graph.global_hash != old_graph.global_hash
    before = _markers(root)
    assembled = _examples(root, "stages/assemble/")  # (the write below deletes the old manifest first)
    build = BuildDir(root)
    settings = Settings.of(changed.split, changed.seed)
    assert Settings.from_build(build) == Settings.of(base.split, base.seed)  # what build.json holds

    def finalize(run_id: str) -> tuple[Marker, Marker, tuple[bool, bool]]:
        split = changed.split
        return Finalizer(graph, build, 5, split.dedup, split.rows_per_file, run_id, settings).run()

    dedup, write, resumed = finalize("second")
    assert resumed == (False, False)
    assert (dedup.run_id, write.run_id) == ("second", "second")
    after = _markers(root)
    assert {k for k in after if after[k] != before.get(k)} == {
        "markers/dedup/global.json",
        "markers/write/global.json",
    }
    entries: list[QuarantineEntry] = [
        q for f in dedup.files for q in tables.decode("quarantine", build.read_table(f))
    ]
    near = {q.preview for q in entries if q.reason.startswith("near-duplicate")}
    balanced = {q.preview for q in entries if q.reason.startswith("balance:")}
    assert dedup.summary["near_duplicates"] == len(near) > 0
    assert dedup.summary["balance_dropped"] == len(balanced) > 0
    kept = [e.example_id for e in assembled if e.example_id not in near | balanced]
    data = [e.example_id for f in write.files for e in tables.decode("example", build.read_table(f))]
    assert sorted(data) == sorted(kept)
    # Again with the same settings: both global stages are reused.
    _, again, resumed = finalize("third")
    assert resumed == (True, True)
    assert again.run_id == "second"
    assert _markers(root) == after


def test_settings_are_read_from_the_build_when_not_given(tmp_path: Path) -> None:
    config = small_config(seed=3, split={"balance": {"target": 0.4, "splits": ["train", "test"]}})
    LocalRunner().run(config, tmp_path / "b")
    settings = Settings.from_build(BuildDir(tmp_path / "b"))
    assert settings == Settings(None, BalanceConfig(target=0.4, splits=["train", "test"]), 3)
    assert Manifest.read(tmp_path / "b").dedup["balance_target_ppm"] == 400000
