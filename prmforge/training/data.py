"""Training rows: a prmforge build's split, or any TRL stepwise dataset (parquet or JSON lines), and targets.

``--data`` may be

- a build directory (it has a ``manifest.json``): the rows of ``data/{split}-*.parquet`` the manifest
  lists (:func:`prmforge.training.builds.build_rows`), hard labels and the fused soft scores;
- one ``.parquet``, ``.jsonl`` or ``.json`` (a list) file with ``prompt``, ``completions`` and ``labels``
  columns (labels booleans or numbers in [0, 1]);
- a folder of such files (searched recursively). When some file names start with a split name
  (``train-00000-of-00001.parquet``, the Hub's layout) or sit in a folder named after one, the train
  rows are those of ``train`` and ``eval_split`` names the others; otherwise every file is training data
  and there is no eval split.

Targets (:func:`targets_of`): in ``hard`` mode a label must be a boolean or exactly 0 or 1 (a soft value
is refused, never rounded or truncated); in ``soft`` mode a step's target is its soft score (a build's
fused score, else the label itself as a number).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prmforge.schemas.errors import ConfigError, RowError
from prmforge.training.config import LabelMode

__all__ = ["SPLITS", "StepwiseRow", "TrainData", "load_train_data", "read_stepwise_file", "targets_of"]

SPLITS = ("train", "validation", "test")
_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass(frozen=True, slots=True)
class StepwiseRow:
    """TRL's stepwise triple, plus a build's per-step soft scores when it has them."""

    prompt: str
    completions: tuple[str, ...]
    labels: tuple[bool | float, ...]
    scores: tuple[float | None, ...] | None = None
    row_id: str = ""


@dataclass(frozen=True, slots=True)
class TrainData:
    """The rows to train on and to evaluate on, and what they came from (for the model's metadata)."""

    rows: list[StepwiseRow]
    eval_rows: list[StepwiseRow] = field(default_factory=list)
    source: str = ""
    kind: str = "stepwise"


def targets_of(row: StepwiseRow, mode: LabelMode) -> tuple[float, ...]:
    """The per-step training targets of ``row`` (see the module docstring); :class:`RowError` otherwise.

    >>> targets_of(StepwiseRow("q", ("a", "b"), (True, False), (0.75, None)), "soft")
    (0.75, 0.0)
    >>> targets_of(StepwiseRow("q", ("a", "b"), (1.0, 0)), "hard")
    (1.0, 0.0)
    """
    out = []
    for t, label in enumerate(row.labels):
        value = float(label)
        if mode == "soft" and row.scores is not None and row.scores[t] is not None:
            value = float(row.scores[t])  # type: ignore[arg-type]  # checked just above
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise RowError(f"{row.row_id or 'row'}.labels.{t}", f"{value} is not in [0, 1]")
        if mode == "hard" and value not in (0.0, 1.0):
            raise RowError(
                f"{row.row_id or 'row'}.labels.{t}",
                f"{value} is not 0 or 1: hard labels do not round soft ones; set label_mode: soft, or "
                "binarise the labels yourself",
            )
        out.append(value)
    return tuple(out)


def _row(data: Any, where: str) -> StepwiseRow:
    if not isinstance(data, dict):
        raise RowError(
            where, f"expected an object with prompt, completions and labels, got {type(data).__name__}"
        )
    prompt, completions, labels = data.get("prompt"), data.get("completions"), data.get("labels")
    if not isinstance(prompt, str):
        raise RowError(f"{where}.prompt", "expected a string (the standard, not the conversational, form)")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise RowError(f"{where}.completions", "expected a list of strings, one per step")
    if not isinstance(labels, list) or not all(isinstance(x, bool | int | float) for x in labels):
        raise RowError(f"{where}.labels", "expected a list of booleans or numbers, one per step")
    if len(labels) != len(completions):
        raise RowError(f"{where}.labels", f"{len(labels)} labels for {len(completions)} steps")
    return StepwiseRow(prompt, tuple(completions), tuple(labels), None, where)


def read_stepwise_file(path: Path) -> list[StepwiseRow]:
    """The rows of one TRL stepwise file (``.parquet``, ``.jsonl``, or ``.json`` holding a list)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records: list[Any] = pq.read_table(path).to_pylist()
    elif path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise RowError(f"{path.name}:{number}", f"not valid JSON ({err.msg})") from None
    elif path.suffix == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise RowError(path.name, "expected a JSON list of rows")
    else:
        raise RowError(path.name, f"unknown file type {path.suffix!r}; give .parquet, .jsonl or .json")
    return [_row(r, f"{path.name}:{i}") for i, r in enumerate(records)]


def split_of(path: Path, root: Path) -> str | None:
    """The split a dataset file belongs to by its name or a parent folder's, else None (pure)."""
    parts = [*path.relative_to(root).parent.parts, path.name]
    for part in parts:
        for split in SPLITS:
            if part == split or part.startswith((f"{split}-", f"{split}_", f"{split}.")):
                return split
    return None


def _folder(root: Path, eval_split: str | None) -> TrainData:
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix in _SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise ConfigError(f"{root}: no .parquet, .jsonl or .json files")
    splits = {p: split_of(p, root) for p in files}
    if not any(splits.values()):
        if eval_split is not None:
            raise ConfigError(
                f"eval_split: {root} has no files named after a split ({', '.join(SPLITS)}); drop eval_split"
            )
        return TrainData([r for p in files for r in read_stepwise_file(p)], [], str(root))
    train = [r for p in files if splits[p] == "train" for r in read_stepwise_file(p)]
    evals = [
        r for p in files if eval_split is not None and splits[p] == eval_split for r in read_stepwise_file(p)
    ]
    if eval_split is not None and not evals:
        raise ConfigError(f"eval_split: {root} has no {eval_split!r} rows")
    return TrainData(train, evals, str(root))


def load_train_data(path: Path, eval_split: str | None = None) -> TrainData:
    """The training (and evaluation) rows ``--data`` names (see the module docstring)."""
    if not path.exists():
        raise ConfigError(f"--data: {path} does not exist")
    if path.is_dir() and (path / "manifest.json").exists():
        from prmforge.training.builds import build_rows

        evals = build_rows(path, eval_split) if eval_split is not None else []
        data = TrainData(build_rows(path, "train"), evals, str(path), "build")
        if eval_split is not None and not evals:
            raise ConfigError(f"eval_split: the build {path} has no {eval_split!r} rows")
    elif path.is_dir():
        data = _folder(path, eval_split)
    else:
        if eval_split is not None:
            raise ConfigError(f"eval_split: {path} is one file, which has no splits; drop eval_split")
        data = TrainData(read_stepwise_file(path), [], str(path))
    if not data.rows:
        raise ConfigError(f"--data: {path} holds no training rows")
    return data


def rows_for_training(
    rows: Sequence[StepwiseRow], mode: LabelMode
) -> list[tuple[str, tuple[str, ...], tuple[float, ...]]]:
    """``(prompt, steps, targets)`` of every row (the tokenizer's input)."""
    return [(r.prompt, r.completions, targets_of(r, mode)) for r in rows]
