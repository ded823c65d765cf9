"""The training configuration (strict, errors name the field) and the rows it trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prmforge.schemas.errors import ConfigError, RowError
from prmforge.training.config import TrainConfig, load_train_config, parse_train_config
from prmforge.training.data import StepwiseRow, load_train_data, read_stepwise_file, split_of, targets_of

ROWS = [
    {"prompt": "What is 2+3?", "completions": ["2+3 = 5.", "So 5."], "labels": [True, True]},
    {"prompt": "What is 2+4?", "completions": ["2+4 = 7."], "labels": [0.0]},
]


def test_defaults_and_a_yaml_file(tmp_path: Path) -> None:
    assert TrainConfig().separator == "\n\n"
    assert TrainConfig().label_mode == "hard"
    path = tmp_path / "train.yaml"
    path.write_text('learning_rate: 2.0e-5\nlabel_mode: soft\nseparator: "\\n"\nmax_steps: 7\n')
    cfg = load_train_config(path)
    assert (cfg.learning_rate, cfg.label_mode, cfg.separator, cfg.max_steps) == (2e-5, "soft", "\n", 7)
    assert cfg.with_max_steps(3).max_steps == 3
    assert cfg.with_max_steps(None).max_steps == 7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"batchsize": 4}, "batchsize: is not a known field; did you mean 'batch_size'?"),
        ({"learning_rate": 0}, "learning_rate: must be > 0"),
        ({"label_mode": "fuzzy"}, "label_mode"),
        ({"max_length": 1}, "max_length"),
        ({"eval_every": 5}, "eval_every: needs an eval_split"),
        ({"bf16": "maybe"}, "bf16"),
    ],
)
def test_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"train\.yaml") as err:
        parse_train_config(data, origin="train.yaml")
    assert message in str(err.value)


def test_a_config_that_is_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_train_config(bad)
    bad.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="no such training configuration"):
        load_train_config(tmp_path / "missing.yaml")


def test_hard_targets_refuse_soft_values_and_soft_targets_keep_them() -> None:
    row = StepwiseRow("q", ("a", "b"), (0.7, True), row_id="r1")
    with pytest.raises(RowError, match=r"r1\.labels\.0: 0.7 is not 0 or 1"):
        targets_of(row, "hard")
    assert targets_of(row, "soft") == (0.7, 1.0)
    scored = StepwiseRow("q", ("a", "b"), (True, False), (0.875, None))
    assert targets_of(scored, "soft") == (0.875, 0.0)
    assert targets_of(scored, "hard") == (1.0, 0.0)
    with pytest.raises(RowError, match=r"not in \[0, 1\]"):
        targets_of(StepwiseRow("q", ("a",), (1.5,)), "soft")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_reads_trl_stepwise_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "prompt": [r["prompt"] for r in ROWS],
                "completions": [r["completions"] for r in ROWS],
                "labels": [[float(x) for x in r["labels"]] for r in ROWS],  # type: ignore[union-attr]
            }
        )
        pq.write_table(table, path)
    rows = read_stepwise_file(path)
    assert [(r.prompt, r.completions, [float(x) for x in r.labels]) for r in rows] == [
        ("What is 2+3?", ("2+3 = 5.", "So 5."), [1.0, 1.0]),
        ("What is 2+4?", ("2+4 = 7.",), [0.0]),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": [{"role": "user"}], "completions": [], "labels": []}, "0.prompt: expected a string"),
        ({"prompt": "q", "completions": "a", "labels": []}, "completions: expected a list of strings"),
        ({"prompt": "q", "completions": ["a"], "labels": ["+"]}, "labels: expected a list of booleans"),
        ({"prompt": "q", "completions": ["a"], "labels": [True, False]}, "2 labels for 1 steps"),
    ],
)
def test_a_bad_row_is_named(tmp_path: Path, row: dict[str, object], message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RowError, match=message):
        read_stepwise_file(path)


def test_a_folder_with_split_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "data" / "validation-00000-of-00001.jsonl").write_text(json.dumps(ROWS[1]) + "\n")
    data = load_train_data(tmp_path, "validation")
    assert [r.prompt for r in data.rows] == ["What is 2+3?"]
    assert [r.prompt for r in data.eval_rows] == ["What is 2+4?"]
    assert split_of(tmp_path / "test" / "x.jsonl", tmp_path) == "test"
    assert split_of(tmp_path / "rows.jsonl", tmp_path) is None
    with pytest.raises(ConfigError, match="no 'test' rows"):
        load_train_data(tmp_path, "test")


def test_a_folder_without_splits_and_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(ROWS[1]) + "\n")
    assert len(load_train_data(tmp_path).rows) == 2
    with pytest.raises(ConfigError, match="no files named after a split"):
        load_train_data(tmp_path, "validation")
    with pytest.raises(ConfigError, match="one file, which has no splits"):
        load_train_data(tmp_path / "a.jsonl", "validation")
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_data(tmp_path / "nope")


def test_a_build_gives_its_splits_hard_labels_and_fused_scores(build_dir: Path) -> None:
    from prmforge.pipelines.export import iter_examples

    data = load_train_data(build_dir, "validation")
    examples = list(iter_examples(build_dir, "train"))
    assert data.kind == "build"
    assert len(data.rows) == len(examples)
    assert data.eval_rows
    for row, example in zip(data.rows, examples, strict=True):
        assert (row.prompt, row.completions, row.labels) == (
            example.prompt,
            example.completions,
            example.labels,
        )
        assert row.scores == example.scores
    assert any(s not in (0.0, 1.0, None) for r in data.rows for s in r.scores or ())  # MC's soft values
