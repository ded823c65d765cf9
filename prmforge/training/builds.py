"""What training and evaluation read from a build directory: its rows and its generated rollouts.

The only module of :mod:`prmforge.training` that imports :mod:`prmforge.pipelines` (the manifest is the
one reader of a build); :mod:`~prmforge.training.scoring`, which the PRM annotator imports, never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prmforge.pipelines.export import iter_examples
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.records import PRMExample, Problem, Rollout
from prmforge.training.data import StepwiseRow

__all__ = ["BuildRollouts", "build_rollouts", "build_rows", "example_row"]


def example_row(example: PRMExample) -> StepwiseRow:
    """A build's row as a stepwise row: its hard labels and its fused soft scores."""
    return StepwiseRow(
        example.prompt, example.completions, example.labels, example.scores, example.example_id
    )


def build_rows(root: Path, split: str) -> list[StepwiseRow]:
    """The rows of one split (``data/{split}-*``), in shard order."""
    return [example_row(e) for e in iter_examples(root, split)]


@dataclass(frozen=True, slots=True)
class BuildRollouts:
    """A build's problems by id and its generated rollouts (with their graded outcome and any truth)."""

    problems: dict[str, Problem]
    rollouts: list[Rollout]


def build_rollouts(root: Path) -> BuildRollouts:
    """The committed ``stages/load`` problems and ``stages/generate`` rollouts of a finished build."""
    manifest = Manifest.read(root)
    build = BuildDir(root)
    problems: list[Problem] = manifest.records(build, "stages/load/", "problem")
    rollouts: list[Rollout] = manifest.records(build, "stages/generate/", "rollout")
    return BuildRollouts({p.problem_id: p for p in problems}, rollouts)
