"""``prmforge quarantine``: the quarantined rows of a build, from the files its manifest lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reporting_builds import cli, one_source, two_sources
from typer.testing import CliRunner

from prmforge.reporting.quarantine import UnknownStageError, escape_preview, list_quarantined

NULL_TEXT = {
    "stage": "load",
    "source": "rollouts:rollouts.jsonl",
    "index": 2,
    "field": "text",
    "reason": "expected a string, found null",
    "byte_length": 51,
    "sha256": "d9b6cdc7e0d4c53885f2fe7097ec5d4e53cfe553da06e9f61645600a829d5937",
    "preview": '{"question": "Broken", "text": null, "answer": "1"}',
}
BAD_BYTES = {
    "stage": "load",
    "source": "rollouts:rollouts.jsonl",
    "index": 3,
    "field": "<row>",
    "reason": "invalid UTF-8 at byte offset 18 (bytes ff): invalid start byte",
    "byte_length": 37,
    "sha256": "99efed0c2c7fc69488a744fd89ac842f41d54aeaa3ea499eb24d75e6f5509e4f",
    "preview": "not json\tat all \x00 \\xff [red]markup[/red]",
}


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ки text", "plain ки text"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("nul\x00 del\x7f bidi\u202e", "nul\\x00 del\\x7f bidi\\u202e"),
        ("raw json \\n stays", "raw json \\n stays"),
        ("x" * 81, "x" * 80 + "…"),
        ("y" * 80, "y" * 80),
    ],
)
def test_escape_preview(text: str, expected: str) -> None:
    assert escape_preview(text) == expected


def test_the_listing_reads_every_quarantined_row(tmp_path_factory: pytest.TempPathFactory) -> None:
    listing = list_quarantined(one_source(tmp_path_factory))
    assert listing.to_json() == {"total": 2, "shown": 2, "rows": [NULL_TEXT, BAD_BYTES]}
    assert listing.stages == ("load", "generate", "annotate-equations", "fuse", "assemble", "dedup", "write")
    limited = list_quarantined(one_source(tmp_path_factory), "load", 1)
    assert limited.to_json() == {"total": 2, "shown": 1, "rows": [NULL_TEXT]}
    assert list_quarantined(one_source(tmp_path_factory), "generate").to_json() == {
        "total": 0, "shown": 0, "rows": [],
    }  # fmt: skip


def test_an_unknown_stage_names_the_stages(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(UnknownStageError) as err:
        list_quarantined(one_source(tmp_path_factory), "parse")
    assert str(err.value) == (
        "--stage: no stage 'parse' in this build; its stages: load, generate, annotate-equations, fuse, "
        "assemble, dedup, write"
    )


def test_the_command_prints_a_table_of_escaped_previews(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = CliRunner().invoke(cli(), ["quarantine", str(one_source(tmp_path_factory))])
    assert run.exit_code == 0, run.output
    out = run.output
    for header in ("stage", "source", "line", "field", "reason", "preview"):
        assert f" {header} " in out
    assert "not json\\tat all \\x00 \\xff" in out  # control characters escaped, one line per row
    assert "[red]markup[/red]" in out  # shown as written, never read as markup
    assert "rollouts:rollouts.jsonl" in out
    assert _words(out).endswith("2 of 2 shown")


def test_the_command_json_and_limit(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = one_source(tmp_path_factory)
    run = CliRunner().invoke(cli(), ["quarantine", str(root), "--json", "--limit", "1", "--stage", "load"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output) == {"total": 2, "shown": 1, "rows": [NULL_TEXT]}


def test_the_command_says_when_nothing_was_quarantined(tmp_path_factory: pytest.TempPathFactory) -> None:
    runner = CliRunner()
    root = two_sources(tmp_path_factory)
    run = runner.invoke(cli(), ["quarantine", str(root), "--stage", "generate"])
    assert (run.exit_code, _words(run.output)) == (0, "no rows quarantined in stage generate")
    run = runner.invoke(cli(), ["quarantine", str(root), "--excluded"])
    assert (run.exit_code, _words(run.output)) == (0, "no rows left out")


def test_the_command_refuses_an_unknown_stage(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    runner = CliRunner()
    run = runner.invoke(cli(), ["quarantine", str(one_source(tmp_path_factory)), "--stage", "parse"])
    assert run.exit_code == 2
    assert _words(run.output) == (
        "error --stage: no stage 'parse' in this build; its stages: load, generate, annotate-equations, "
        "fuse, assemble, dedup, write"
    )
    run = runner.invoke(cli(), ["quarantine", str(tmp_path)])
    assert run.exit_code == 2
    assert _words(run.output) == (
        f"error {tmp_path}: no manifest.json; it is not a finished build (rerun the build to resume it)"
    )
