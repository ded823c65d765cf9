"""Arrow schemas: exact record round trips, null checks, content hashes, and a datasets read-back."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prmforge.schemas.arrow import (
    PRM_EXAMPLE_SCHEMA,
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    ROLLOUT_SCHEMA,
    STEP_LABELS_SCHEMA,
    content_hash,
    meta_to_json,
    prm_examples_from_table,
    prm_examples_to_table,
    problems_from_table,
    problems_to_table,
    quarantine_entry,
    quarantine_from_table,
    quarantine_to_table,
    rollouts_from_table,
    rollouts_to_table,
    step_labels_from_table,
    step_labels_to_table,
)
from prmforge.schemas.errors import RowError
from prmforge.schemas.records import (
    Cost,
    PRMExample,
    Problem,
    Rollout,
    SamplingParams,
    StepLabels,
    StepTruth,
    Vote,
)

PROBLEMS = [
    Problem("p1", "math", "What is 2+3?", "5", "suite:arith", {"plan": [["add", 2, 3]], "b": 1, "a": "é"}),
    Problem("p2", "logic", "P -> Q, P |- Q?", "Q", "suite:logic"),
]
ROLLOUTS = [
    Rollout(
        rollout_id="r1",
        problem_id="p1",
        policy="sim",
        sampling=SamplingParams(0.7, 0.95, 256),
        seed=2**40,
        text="2+3=5\n\nThe answer is: 5",
        steps=("2+3=5", "The answer is: 5"),
        final_answer="5",
        outcome=True,
        prompt_tokens=12,
        completion_tokens=9,
        truth=StepTruth(-1, (True, True)),
    ),
    Rollout(
        rollout_id="r2",
        problem_id="p1",
        policy="sim",
        sampling=SamplingParams(),
        seed=0,
        text="",
        steps=(),
        final_answer=None,
        outcome=None,
        prompt_tokens=0,
        completion_tokens=0,
    ),
]
STEP_LABELS = [
    StepLabels(
        source="mc",
        rollout_id="r1",
        values=(1.0, None, 0.125),
        hard=(True, None, False),
        first_error=2,
        cost=Cost(completions=16, generated_tokens=900, tool_calls=0, seconds=1.25, cached_completions=4),
        meta={"judge": "raw text\u2028with a line separator", "ids": [1, 2]},
    ),
    StepLabels("judge", "r2", (), (), None, Cost()),
]
EXAMPLES = [
    PRMExample(
        example_id="e1",
        problem_id="p1",
        prompt="What is 2+3?",
        completions=("2+3=6", "The answer is: 6"),
        labels=(False, False),
        scores=(0.1, None),
        first_error=0,
        votes=(Vote("mc", 0), Vote("judge", None)),
        agreement=0.5,
        weight=1.0,
        split="train",
        gold="5",
        final_answer="6",
        outcome=False,
        truth_first_error=0,
        truth_step_correct=(False, False),
    ),
    PRMExample(
        example_id="e2",
        problem_id="p2",
        prompt="Q?",
        completions=("step",),
        labels=(True,),
        scores=(0.9,),
        first_error=-1,
        votes=(),
        agreement=1.0,
        weight=0.25,
        split="test",
        gold="Q",
        final_answer=None,
        outcome=None,
    ),
]


def test_problem_round_trip_is_exact() -> None:
    """Problems come back equal, meta included, with meta stored as sorted-key JSON."""
    table = problems_to_table(PROBLEMS)
    assert table.schema == PROBLEM_SCHEMA
    assert problems_from_table(table) == PROBLEMS
    assert table.column("meta_json")[0].as_py() == '{"a":"\\u00e9","b":1,"plan":[["add",2,3]]}'


def test_rollout_round_trip_keeps_truth_and_none() -> None:
    """Truth structs, a None truth, None answers and outcomes all survive."""
    table = rollouts_to_table(ROLLOUTS)
    assert table.schema == ROLLOUT_SCHEMA
    back = rollouts_from_table(table)
    assert back == ROLLOUTS
    assert back[1].truth is None
    assert table.column("truth").null_count == 1


def test_step_labels_round_trip_keeps_nested_cost_and_null_items() -> None:
    """Costs, None values inside the per-step lists, and a None first_error survive."""
    table = step_labels_to_table(STEP_LABELS)
    assert table.schema == STEP_LABELS_SCHEMA
    assert step_labels_from_table(table) == STEP_LABELS
    assert table.column("cost")[0].as_py()["seconds"] == 1.25


def test_prm_example_round_trip_is_exact() -> None:
    """Votes, null scores and the optional truth columns survive."""
    table = prm_examples_to_table(EXAMPLES)
    assert table.schema == PRM_EXAMPLE_SCHEMA
    assert prm_examples_from_table(table) == EXAMPLES


def test_round_trip_through_parquet_with_small_row_groups(tmp_path: Path) -> None:
    """Writing Parquet and reading it back gives the same records."""
    path = tmp_path / "rollouts.parquet"
    pq.write_table(rollouts_to_table(ROLLOUTS), path, row_group_size=1)
    assert rollouts_from_table(pq.read_table(path)) == ROLLOUTS


def test_quarantine_entry_previews_invalid_utf8_with_escapes() -> None:
    """The preview shows bad bytes as backslash escapes and keeps only 512 characters."""
    raw = b'{"question": "caf\xe9"}' + b"x" * 1000
    entry = quarantine_entry(stage="load", source="in.jsonl", index=3, field="<row>", reason="bad", raw=raw)
    assert entry.preview.startswith('{"question": "caf\\xe9"}xx')
    assert len(entry.preview) == 512
    assert entry.byte_length == len(raw)
    assert entry.sha256 == hashlib.sha256(raw).hexdigest()
    table = quarantine_to_table([entry])
    assert table.schema == QUARANTINE_SCHEMA
    assert quarantine_from_table(table) == [entry]


def test_null_in_a_required_field_is_refused_on_write() -> None:
    """A None where the record type forbids one is an error, not a silent null."""
    broken = dataclasses.replace(PROBLEMS[0], gold=None)  # type: ignore[arg-type]
    with pytest.raises(RowError) as err:
        problems_to_table([broken])
    assert err.value.field == "gold"
    no_seconds = dataclasses.replace(STEP_LABELS[1], cost=Cost(seconds=None))  # type: ignore[arg-type]
    with pytest.raises(RowError) as nested:
        step_labels_to_table([no_seconds])
    assert nested.value.field == "cost.seconds"


def test_null_inside_a_nested_required_field_is_refused_on_read() -> None:
    """A null step_correct list inside a present truth struct is refused, naming both levels."""
    table = rollouts_to_table(ROLLOUTS[:1])
    truth = pa.array(
        [{"first_error": 0, "step_correct": None}],
        type=pa.struct([("first_error", pa.int32()), ("step_correct", pa.list_(pa.bool_()))]),
    )
    loose = table.set_column(table.schema.get_field_index("truth"), "truth", truth)
    with pytest.raises(RowError) as err:
        rollouts_from_table(loose)
    assert err.value.field == "truth"
    assert "step_correct" in err.value.reason


def test_null_in_a_required_column_is_refused_on_read() -> None:
    """A top-level null where the record forbids one names the column."""
    table = prm_examples_to_table(EXAMPLES)
    loose = table.set_column(6, "first_error", pa.array([None, 1], type=pa.int32()))
    with pytest.raises(RowError) as err:
        prm_examples_from_table(loose)
    assert err.value.field == "first_error"
    assert "1 null value(s)" in err.value.reason


def test_missing_column_and_bad_domain_are_named() -> None:
    """Reading a table without a column, or with an unknown domain, names the column."""
    table = problems_to_table(PROBLEMS)
    with pytest.raises(RowError) as missing:
        problems_from_table(table.drop_columns(["gold"]))
    assert missing.value.field == "gold"
    bad = table.set_column(1, "domain", pa.array(["algebra", "math"]))
    with pytest.raises(RowError) as domain:
        problems_from_table(bad)
    assert domain.value.field == "domain"
    assert "'math', 'logic', 'code'" in domain.value.reason


def test_meta_json_is_deterministic() -> None:
    """Key order does not change the stored bytes."""
    assert meta_to_json({"b": 1, "a": [1.5, None]}) == meta_to_json({"a": [1.5, None], "b": 1})


def test_content_hash_ignores_chunking_and_row_groups(tmp_path: Path) -> None:
    """The same rows hash the same whether written in one row group or many, chunked or not."""
    table = prm_examples_to_table(EXAMPLES * 5)
    expected = content_hash(table)
    chunked = pa.concat_tables([table.slice(0, 3), table.slice(3, 4), table.slice(7)])
    assert chunked.column("votes").num_chunks == 3
    assert content_hash(chunked) == expected
    for row_group_size, dictionary in ((1, True), (4, False), (100, True)):
        path = tmp_path / f"rg{row_group_size}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size, use_dictionary=dictionary)
        read = pq.read_table(path, read_dictionary=["prompt"] if dictionary else None)
        assert content_hash(read) == expected


def test_content_hash_changes_with_any_value() -> None:
    """Changing one nested value, or a float in its last bit, changes the hash."""
    base = content_hash(step_labels_to_table(STEP_LABELS))
    nudged = dataclasses.replace(STEP_LABELS[0], values=(1.0, None, 0.12500000000000003))
    assert content_hash(step_labels_to_table([nudged, STEP_LABELS[1]])) != base
    other_cost = dataclasses.replace(
        STEP_LABELS[0], cost=dataclasses.replace(STEP_LABELS[0].cost, tool_calls=1)
    )
    assert content_hash(step_labels_to_table([other_cost, STEP_LABELS[1]])) != base


def test_content_hash_excludes_wall_time_and_columns() -> None:
    """cost.seconds and whole columns can be left out; other columns still count."""
    slow = dataclasses.replace(STEP_LABELS[0], cost=dataclasses.replace(STEP_LABELS[0].cost, seconds=99.0))
    fast_table = step_labels_to_table(STEP_LABELS)
    slow_table = step_labels_to_table([slow, STEP_LABELS[1]])
    assert content_hash(fast_table) != content_hash(slow_table)
    assert content_hash(fast_table, exclude=["cost.seconds"]) == content_hash(
        slow_table, exclude=["cost.seconds"]
    )
    assert content_hash(fast_table, exclude=["cost"]) == content_hash(slow_table, exclude=["cost"])
    other_meta = dataclasses.replace(slow, meta={})
    assert content_hash(fast_table, exclude=["cost.seconds"]) != content_hash(
        step_labels_to_table([other_meta, STEP_LABELS[1]]), exclude=["cost.seconds"]
    )


def test_content_hash_excludes_through_lists_and_rejects_unknown_paths() -> None:
    """A struct field inside a list can be excluded; a path that does not exist is an error."""
    table = prm_examples_to_table(EXAMPLES)
    renamed = prm_examples_to_table(
        [dataclasses.replace(EXAMPLES[0], votes=(Vote("x", 0), Vote("y", None))), EXAMPLES[1]]
    )
    assert content_hash(table, exclude=["votes.source"]) == content_hash(renamed, exclude=["votes.source"])
    assert content_hash(table) != content_hash(renamed)
    with pytest.raises(ValueError, match="nope"):
        content_hash(table, exclude=["nope"])
    with pytest.raises(ValueError, match="seconds"):
        content_hash(table, exclude=["votes.seconds"])
    with pytest.raises(ValueError, match="no fields"):
        content_hash(table, exclude=["prompt.x"])


def test_prm_examples_load_with_datasets(tmp_path: Path) -> None:
    """datasets reads our Parquet back with TRL's prompt/completions/labels unchanged."""
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "train-00000.parquet"
    pq.write_table(prm_examples_to_table(EXAMPLES), path)
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert loaded["prompt"] == ["What is 2+3?", "Q?"]
    assert loaded["completions"] == [["2+3=6", "The answer is: 6"], ["step"]]
    assert loaded["labels"] == [[False, False], [True]]
    assert loaded.features["labels"].feature.dtype == "bool"
    assert loaded["truth_step_correct"] == [[False, False], None]
