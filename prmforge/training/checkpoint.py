"""Atomic, resumable checkpoints under ``OUTPUT/checkpoints/step-NNNNNNNN/``.

A checkpoint is :meth:`accelerate.Accelerator.save_state` (weights, optimizer state, every process's
random states) plus ``trainer_state.json`` (the step reached and the fingerprints a resume must match),
written into ``step-NNNNNNNN.partial`` and renamed into place only when complete: a directory named
``step-NNNNNNNN`` is always a whole checkpoint, and a crash mid-save leaves only a ``.partial`` that the
next run removes. The newest ``keep`` checkpoints are kept.

Nothing else is needed to resume exactly: the rows of every step and its learning rate follow from the
step number (:mod:`prmforge.training.plan`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "STATE_FILE",
    "checkpoints_dir",
    "clean_partials",
    "latest_checkpoint",
    "list_checkpoints",
    "save_checkpoint",
]

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoints_dir(output: Path) -> Path:
    return output / "checkpoints"


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints, oldest first, as ``(step, directory)``."""
    root = checkpoints_dir(output)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint and its trainer state, or None."""
    found = list_checkpoints(output)
    if not found:
        return None
    path = found[-1][1]
    state: dict[str, Any] = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    return path, state


def clean_partials(output: Path) -> None:
    """Remove what an interrupted save left (``*.partial``)."""
    root = checkpoints_dir(output)
    if root.is_dir():
        for path in root.glob("*.partial"):
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(accelerator: Any, output: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Save the training state after ``step`` optimizer steps; every process must call it."""
    root = checkpoints_dir(output)
    final = root / f"step-{step:08d}"
    partial = root / f"step-{step:08d}.partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        blob = (json.dumps({**state, "step": step}, indent=2, sort_keys=True) + "\n").encode()
        with (partial / STATE_FILE).open("wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        for path in partial.iterdir():  # the weights and optimizer state are on disk before the rename
            if path.is_file():
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        _fsync_dir(root)
        for _, old in list_checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
