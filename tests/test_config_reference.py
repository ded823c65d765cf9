"""scripts/gen_config_reference.py: the exact reference of a small model, and --check / --write."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from prmforge.schemas.config_reference import END, START, main, render_reference

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen_config_reference.py"

SOURCE = '''
from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class MonteCarlo(_Strict):
    """Monte Carlo estimation.

    Only the first paragraph is shown.
    """

    kind: Literal["mc"] = "mc"
    n: int = Field(8, ge=1, description="completions per step")
    sampling: Sampling = Field(default_factory=Sampling)


class Equations(_Strict):
    kind: Literal["equations"]
    mode: Mode = Field(Mode.FAST, description="fast | slow")
    tolerance: float | None = None
    label: str | None = Field(None, min_length=1)
    weights: dict[str, Sampling] = Field(default_factory=dict)


Annotator = Annotated[MonteCarlo | Equations, Field(discriminator="kind")]


class Build(_Strict):
    """A build."""

    name: str = Field(..., min_length=1, description="the build's name")
    output: Path | None = None
    annotate: list[Annotator] = Field(default_factory=lambda: [MonteCarlo(n=4)], min_length=1)
    tags: list[str] = Field(default_factory=lambda: ["a", "off"], max_length=3)
    rule: Literal["single", "earliest", "majority"] = "single"
    sampling: Sampling = Field(default_factory=lambda: Sampling(top_p=0.9), description="the default")
'''

HEADER = "| key | type | default | description |\n| --- | --- | --- | --- |\n"
EXPECTED = (
    HEADER + "| `name` | string, non-empty | required | the build's name |\n"
    "| `output` | path or null | `null` |  |\n"
    "| `annotate` | list of mappings with a `kind` (mc, equations), at least 1 item "
    "| `[{kind: mc, n: 4}]` |  |\n"
    "| `tags` | list of strings, at most 3 items | `[a, 'off']` |  |\n"
    "| `rule` | one of `single`, `earliest`, `majority` | `single` |  |\n"
    "| `sampling` | mapping | `{top_p: 0.9}` | the default |\n"
    "| `sampling.temperature` | number >= 0 | `0.7` | sampling temperature |\n"
    "| `sampling.top_p` | number in (0, 1] | `1.0`; `0.9` when `sampling` is omitted |  |\n"
    "\n"
    "### `annotate[]` with `kind: mc`\n"
    "\n"
    "Monte Carlo estimation.\n"
    "\n" + HEADER + "| `annotate[].kind` | `mc` | `mc` |  |\n"
    "| `annotate[].n` | integer >= 1 | `8` | completions per step |\n"
    "| `annotate[].sampling` | mapping | `{}` |  |\n"
    "| `annotate[].sampling.temperature` | number >= 0 | `0.7` | sampling temperature |\n"
    "| `annotate[].sampling.top_p` | number in (0, 1] | `1.0` |  |\n"
    "\n"
    "### `annotate[]` with `kind: equations`\n"
    "\n" + HEADER + "| `annotate[].kind` | `equations` | required |  |\n"
    "| `annotate[].mode` | `fast` or `slow` | `fast` | fast \\| slow |\n"
    "| `annotate[].tolerance` | number or null | `null` |  |\n"
    "| `annotate[].label` | string (non-empty) or null | `null` |  |\n"
    "| `annotate[].weights` | mapping of string to mapping | `{}` |  |\n"
    "| `annotate[].weights.*.temperature` | number >= 0 | `0.7` | sampling temperature |\n"
    "| `annotate[].weights.*.top_p` | number in (0, 1] | `1.0` |  |\n"
)
README = f"# Demo\n\nIntro.\n\n## Configuration\n\n{START}\nstale text\n{END}\n\nAfter.\n"


@pytest.fixture
def synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "synth_config.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    yield importlib.import_module("synth_config")
    sys.modules.pop("synth_config", None)


def test_render_reference_exact(synth: ModuleType) -> None:
    assert render_reference(synth.Build) == EXPECTED


def test_script_exports_render_reference_and_prints(synth: ModuleType) -> None:
    spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.render_reference(synth.Build) == EXPECTED
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "synth_config:Build"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, EXPECTED, "")


def test_check_detects_a_stale_block_and_write_fixes_it(
    synth: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["synth_config:Build", "--check", str(readme)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"--- {readme}\n+++ {readme} (generated)\n")
    assert "-stale text\n" in out
    assert "+| `name` | string, non-empty | required | the build's name |\n" in out
    assert err == (
        f"{readme}: the configuration reference is stale; run "
        f"scripts/gen_config_reference.py synth_config:Build --write {readme}\n"
    )
    assert readme.read_text() == README

    assert main(["synth_config:Build", "--write", str(readme)]) == 0
    assert readme.read_text() == README.replace("stale text\n", EXPECTED)
    assert main(["synth_config:Build", "--check", str(readme)]) == 0
    assert capsys.readouterr() == ("", "")


def test_check_through_the_script(synth: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.replace("stale text\n", EXPECTED.replace("`0.7`", "`0.8`", 1)))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "synth_config:Build", "--check", str(readme)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "-| `sampling.temperature` | number >= 0 | `0.8` | sampling temperature |\n" in done.stdout
    assert "+| `sampling.temperature` | number >= 0 | `0.7` | sampling temperature |\n" in done.stdout


def test_bad_arguments(synth: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert main(["synth_config:Build", "--check", str(readme)]) == 2
    assert capsys.readouterr().err == f"{readme}: no {START} ... {END} block\n"
    assert main(["synth_config:Build", "--check", str(tmp_path / "absent.md")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'absent.md'}: No such file or directory\n"
    assert main(["synth_config:Nope"]) == 2
    assert capsys.readouterr().err == (
        "gen_config_reference.py: 'synth_config:Nope' is not MODULE:MODEL naming a pydantic model\n"
    )
