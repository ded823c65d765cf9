"""Learning early what cannot work: refused combinations, plain-words errors, warnings, failing builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import processbench_items, write_jsonl
from typer.testing import CliRunner, Result

from prmforge.pipelines.cli import app

runner = CliRunner()
PYDANTIC_WORDS = ("Unable to extract tag", "<root>", "Value error", "Input should be", "validation error")


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for words in PYDANTIC_WORDS:
        assert words not in result.output
    return result


def flat(result: Result) -> str:
    return " ".join(result.output.split())


def _nothing(kind: str, labels: str, inputs: str, gives: str) -> str:
    return (
        f"annotate.0: '{kind}' labels {labels} problems only, and the inputs ({inputs}) give {gives}; it "
        "would label nothing"
    )


REFUSED: list[tuple[list[dict[str, Any]], str, str]] = [
    ([{"kind": "arith", "count": 3}], "z3", _nothing("z3", "logic", "arith", "math")),
    ([{"kind": "arith", "count": 3}], "compile-test", _nothing("compile-test", "code", "arith", "math")),
    ([{"kind": "logic", "count": 3}], "equations", _nothing("equations", "math", "logic", "logic")),
    ([{"kind": "gsm8k", "limit": 3}], "lsp-reward", _nothing("lsp-reward", "code", "gsm8k", "math")),
    ([{"kind": "logic", "count": 3}], "mc", _nothing("mc", "math", "logic", "logic")),
    ([{"kind": "code", "count": 3}], "mc", _nothing("mc", "math", "code", "code")),
    (
        [{"kind": "rollouts", "path": "pb.json", "preset": "processbench"}],
        "mc",
        "annotate.0: 'mc' continues each step's prefix with the policy, which only the math inputs that "
        "generate their rollouts allow; inputs (rollouts) need a tool method (equations, z3, compile-test, "
        "lsp-reward)",
    ),
]


@pytest.mark.parametrize(
    ("inputs", "kind", "expected"), REFUSED, ids=[f"{r[1]}-on-{r[0][0]['kind']}" for r in REFUSED]
)
@pytest.mark.parametrize("command", ["validate", "build"])
def test_combinations_that_label_nothing_are_refused(
    tmp_path: Path, inputs: list[dict[str, Any]], kind: str, expected: str, command: str
) -> None:
    (tmp_path / "pb.json").write_text(json.dumps(processbench_items(2)))
    config = write(
        tmp_path, {"name": "t", "inputs": inputs, "annotate": [{"kind": kind}], "runner": {"workers": 0}}
    )
    args = [command, str(config)] + (["-o", str(tmp_path / "b")] if command == "build" else [])
    result = invoke(*args)
    assert result.exit_code == 2
    assert flat(result) == f"error {config}: 1 problem(s) in the configuration {expected}"
    assert not (tmp_path / "b").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"anotate": [{"kind": "mc"}]}, "anotate: is not a known field; did you mean 'annotate'?"),
        (
            {"runner": {"shard_sise": 4}},
            "runner.shard_sise: is not a known field; did you mean 'shard_size'?",
        ),
        (
            {"annotate": [{"kind": "mc", "early_stp": True}]},
            "annotate.0.early_stp: is not a known field; did you mean 'early_stop'?",
        ),
        (
            {"inputs": [{"kind": "arith", "cont": 3}]},
            "inputs.0.cont: is not a known field; did you mean 'count'?",
        ),
        (
            {"annotate": [{"kind": "equation"}]},
            "annotate.0: unknown kind 'equation'; allowed: mc, omegaprm, scan, vouch, equations, z3, "
            "compile-test, lsp-reward, judge, prm; did you mean 'equations'?",
        ),
        (
            {"fuse": {"rule": "earlist"}},
            "fuse.rule: must be one of 'single', 'earliest', 'majority', 'consensus', 'weighted', "
            "'grounded' (got 'earlist'); did you mean 'earliest'?",
        ),
        (
            {"annotate": [{"kind": "mc", "name": False}]},
            "annotate.0.name: must be a string; got the YAML boolean false (from off/no/false?); quote it: "
            "'off'",
        ),
        (
            {"name": True},
            "name: must be a string; got the YAML boolean true (from on/yes/true?); quote it: 'on'",
        ),
        (
            {"policy": {"params": {"eror_rate": 0.1}}},
            "policy.params: unknown parameter(s) ['eror_rate']; did you mean 'error_rate'? allowed:",
        ),
    ],
    ids=["top-level", "runner", "annotator", "input", "kind", "rule", "name-off", "name-on", "policy-param"],
)
def test_mistyped_keys_and_yaml_booleans_are_named_in_plain_words(
    tmp_path: Path, patch: dict[str, Any], expected: str
) -> None:
    data = {"name": "t", "inputs": [{"kind": "arith", "count": 3}], **patch}
    result = invoke("validate", str(write(tmp_path, data)))
    assert result.exit_code == 2
    assert expected in flat(result)


def test_a_yaml_boolean_name_written_as_off_says_to_quote_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: t\ninputs: [{kind: arith, count: 3}]\nannotate: [{kind: mc, name: off}]\n")
    result = invoke("validate", str(config))
    assert result.exit_code == 2
    assert flat(result) == (
        f"error {config}: 1 problem(s) in the configuration annotate.0.name: must be a string; got the YAML "
        "boolean false (from off/no/false?); quote it: 'off'"
    )


def test_an_input_range_with_no_rows_warns(tmp_path: Path) -> None:
    data = {
        "name": "t",
        "inputs": [{"kind": "arith", "count": 3}, {"kind": "arith", "count": 3, "seed": 1, "offset": 5}],
    }
    result = invoke("validate", str(write(tmp_path, data)))
    assert result.exit_code == 0
    assert "warning inputs.1: its range holds 0 rows" in flat(result)
    assert "warning inputs.0" not in flat(result)
    assert "valid (2 input(s), 3 input rows" in flat(result)


def test_a_build_ending_with_no_training_rows_fails_with_the_top_reasons(tmp_path: Path) -> None:
    """Every rollout is left out (equations cannot check a step without an equation): exit 1, say why."""
    rows = [{"question": f"q{i}", "steps": ["I think so.", "Yes."]} for i in range(3)]
    data = write_jsonl(tmp_path / "mine.jsonl", rows)
    config = write(tmp_path, {"name": "t", "inputs": [{"kind": "rollouts", "path": str(data)}],
                              "annotate": [{"kind": "equations"}], "runner": {"workers": 0}})  # fmt: skip
    result = invoke("build", str(config), "-o", str(tmp_path / "b"))
    assert result.exit_code == 1
    assert (
        "error the build has 0 training rows: 3 x assemble: first_error: undecided: equations could not "
        "decide (an unchecked step comes first)"
    ) in flat(result)
    assert "left out 3 x assemble: first_error: undecided: equations could not decide" in flat(result)


def test_stats_of_a_missing_directory_says_it_does_not_exist(tmp_path: Path) -> None:
    for args in (["stats", str(tmp_path / "nope")], ["stats", str(tmp_path / "nope"), "--json"]):
        result = invoke(*args)
        assert result.exit_code == 1
        assert flat(result) == f"error {tmp_path / 'nope'}: does not exist"


def test_stats_of_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = invoke("stats", str(tmp_path / "f"))
    assert result.exit_code == 1
    assert flat(result) == f"error {tmp_path / 'f'}: is not a directory (give a build directory)"


def test_an_output_under_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    config = write(
        tmp_path, {"name": "t", "inputs": [{"kind": "arith", "count": 2}], "runner": {"workers": 0}}
    )
    result = invoke("build", str(config), "-o", str(tmp_path / "afile" / "b"))
    assert result.exit_code == 1
    assert f"error {tmp_path / 'afile' / 'b'}: cannot be created, {tmp_path / 'afile'} is a file" in flat(
        result
    )


def test_negative_workers_name_the_option(tmp_path: Path) -> None:
    config = write(tmp_path, {"name": "t", "inputs": [{"kind": "arith", "count": 2}]})
    result = invoke("build", str(config), "-o", str(tmp_path / "b"), "--workers", "-1")
    assert result.exit_code == 2
    assert flat(result) == "error --workers: must be >= 0 (got -1)"


def test_sandbox_timeout_names_the_option_not_the_internal_field(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("print(1)\n")
    result = invoke("sandbox", "run", "--timeout", "-1", str(program))
    assert result.exit_code == 2
    assert "--timeout: must be > 0 (got -1)" in flat(result)
    assert "wall_s" not in result.output


def test_two_problem_files_of_one_stem_without_an_id_column_are_refused() -> None:
    """Their ids (<stem>-<row>) would collide, and one problem's rollouts would replace the other's."""
    from prmforge.pipelines.config import parse_config
    from prmforge.schemas.errors import ConfigError

    inputs = [
        {"kind": "problems", "path": "/data/a/train.jsonl", "preset": "gsm8k"},
        {"kind": "problems", "path": "/data/b/train.jsonl", "preset": "gsm8k"},
    ]
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "inputs": inputs, "annotate": [{"kind": "equations"}]})
    assert str(err.value).splitlines()[1] == (
        "  inputs.1: its problem ids (<file stem>-<row>) collide with those of inputs.0: both files are "
        "called 'train'; map an id column (columns.id) or rename one file"
    )
    with_ids = [{**inputs[1], "columns": {"id": "id"}}]
    parse_config({"name": "x", "inputs": [inputs[0], *with_ids], "annotate": [{"kind": "equations"}]})


def test_lsp_reward_refuses_c_programs_at_validation() -> None:
    """Only Python has a language server here; C rollouts would be silently unchecked."""
    from prmforge.pipelines.config import parse_config
    from prmforge.schemas.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(
            {"name": "x", "inputs": [{"kind": "code", "count": 4}], "annotate": [{"kind": "lsp-reward"}]}
        )
    assert str(err.value).splitlines()[1] == (
        "  annotate.0: 'lsp-reward' has a language server for Python only (pyright), and inputs.0 gives C "
        "programs: set its `languages: [python]`, or label C with compile-test"
    )
    parse_config(
        {
            "name": "x",
            "inputs": [{"kind": "code", "count": 4, "languages": ["python"]}],
            "annotate": [{"kind": "lsp-reward"}],
        }
    )
