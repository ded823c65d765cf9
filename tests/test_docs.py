"""The README's configuration reference is generated from the models; every example config validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmforge.pipelines.cli import app
from prmforge.pipelines.config import BuildConfig
from prmforge.schemas.config_reference import render_reference, replace_block

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "configs" / "examples").glob("*.yaml"))


def test_the_readme_reference_is_current() -> None:
    """Regenerate: scripts/gen_config_reference.py prmforge.pipelines.config:BuildConfig --write README.md"""
    text = (ROOT / "README.md").read_text()
    assert replace_block(text, render_reference(BuildConfig)) == text


def test_there_is_an_example_per_annotator_and_input_format() -> None:
    names = {p.stem for p in EXAMPLES}
    kinds = ("mc", "omegaprm", "scan", "vouch", "equations", "z3", "compile-test", "lsp-reward", "judge")
    kinds += ("prm",)
    for kind in kinds:
        assert f"annotate-{kind}" in names
    assert {"input-problems-gsm8k", "input-problems-columns", "input-rollouts-processbench"} <= names
    assert "input-rollouts-text" in names
    assert {"policy-transformers", "policy-openai", "policy-vllm"} <= names


@pytest.mark.parametrize(
    "path",
    [*EXAMPLES, ROOT / "configs" / "quickstart.yaml", ROOT / "configs" / "recipe.yaml"],
    ids=lambda p: p.name,
)
def test_every_example_config_validates(path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid (" in " ".join(result.output.split())
