"""Write a build's training rows as JSONL in an external PRM format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from prmforge.pipelines import tables
from prmforge.pipelines.runners.builddir import BuildDir, atomic_write_bytes
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.exporters import to_math_shepherd, to_qwen_messages, to_trl
from prmforge.schemas.records import PRMExample

Format = Literal["trl", "math-shepherd", "qwen"]


def iter_examples(root: Path, split: str) -> Iterator[PRMExample]:
    """The build's rows of one split, in shard order, from the files the manifest lists."""
    build = BuildDir(root)
    for f in Manifest.read(root).under(f"data/{split}-"):
        yield from tables.decode("example", build.read_table(f.entry))


def export_row(example: PRMExample, fmt: Format) -> dict[str, Any]:
    if fmt == "trl":
        return dict(to_trl(example))
    if fmt == "math-shepherd":
        return dict(to_math_shepherd(example.prompt, example.completions, example.labels))
    return {
        "messages": to_qwen_messages(example.prompt, example.completions),
        "labels": list(example.labels),
    }


def export_jsonl(root: Path, fmt: Format, output: Path, split: str = "train") -> int:
    """Write every row of ``split`` to ``output`` (atomically); returns the row count."""
    lines = [json.dumps(export_row(e, fmt), ensure_ascii=False) for e in iter_examples(root, split)]
    atomic_write_bytes(output, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return len(lines)
