"""`prmforge train` and `prmforge eval` through the typer app the lead mounts (train_app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_data import processbench_file
from typer.testing import CliRunner

from prmforge.pipelines.cli_train import train_app

runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(train_app, command)
    assert result.exit_code == 0, result.output


def test_train_a_build_and_refuse_to_overwrite_it(
    build_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("batch_size: 4\nlearning_rate: 1.0e-3\ncheckpoint_every: 1\neval_split: validation\n")
    out = tmp_path / "prm"
    args = ["train", "--data", str(build_dir), "--model", str(tiny_model_dir), "--output", str(out)]
    result = runner.invoke(train_app, [*args, "--config", str(config), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "trained 2 steps on" in text
    assert "eval (" in text
    assert "first-error F1" in text
    assert (out / "prmforge-prm.json").is_file()
    again = runner.invoke(train_app, [*args, "--config", str(config), "--max-steps", "3", "--resume"])
    assert again.exit_code == 1
    assert "already holds a trained PRM" in _flat(again.output)


def test_train_names_a_bad_config_field_and_a_missing_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("learning_rat: 1.0\n")
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "q", "completions": ["a"], "labels": [True]}) + "\n")
    args = ["train", "--data", str(data), "--output", str(tmp_path / "o")]
    result = runner.invoke(train_app, [*args, "--model", str(tiny_model_dir), "--config", str(config)])
    assert result.exit_code == 2
    assert "learning_rat: is not a known field; did you mean 'learning_rate'?" in _flat(result.output)
    result = runner.invoke(train_app, [*args, "--model", str(tmp_path / "no-model")])
    assert result.exit_code == 1
    assert "cannot load" in _flat(result.output)


def test_eval_on_processbench_with_a_tuned_threshold_and_best_of_n(
    trained_prm: Path, build_dir: Path, tmp_path: Path
) -> None:
    test = processbench_file(tmp_path / "gsm8k.json", 0, 12)
    tune = processbench_file(tmp_path / "tune.jsonl", 200, 12, jsonl=True)
    report = tmp_path / "report.json"
    result = runner.invoke(
        train_app,
        [
            "eval",
            str(trained_prm),
            "--input",
            str(test),
            "--tune-on",
            str(tune),
            "--build",
            str(build_dir),
            "--json-out",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "first-error F1" in text
    assert "tuned on" in text
    assert "Best-of-N" in text
    assert "oracle" in text
    data = json.loads(report.read_text())
    (subset,) = data["first_error"]["subsets"]
    assert subset["name"] == "gsm8k"
    assert subset["items"] == 12
    assert subset["threshold"] == 0.5
    assert data["first_error"]["tuned"]["threshold"] is not None
    assert set(data["best_of_n"]["result"]["accuracy"]) == {"min", "last", "product"}


def test_eval_refuses_to_tune_on_the_test_file(trained_prm: Path, tmp_path: Path) -> None:
    test = processbench_file(tmp_path / "gsm8k.json", 0, 4)
    result = runner.invoke(
        train_app, ["eval", str(trained_prm), "--input", str(test), "--tune-on", str(test)]
    )
    assert result.exit_code == 1
    assert "Tune on a separate file" in _flat(result.output)
    result = runner.invoke(train_app, ["eval", str(trained_prm)])
    assert result.exit_code == 2
    assert "--input" in _flat(result.output)
