"""``prmforge quarantine``: the rows a build quarantined (or left out), from the files its manifest lists."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import PrmforgeError

__all__ = ["PREVIEW_WIDTH", "Listing", "UnknownStageError", "escape_preview", "list_quarantined"]

PREVIEW_WIDTH: Final = 80
_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class UnknownStageError(PrmforgeError, ValueError):
    """``--stage`` names no stage of the build."""


@dataclass(frozen=True, slots=True)
class Listing:
    entries: tuple[QuarantineEntry, ...]  # the rows shown (at most ``limit``), in manifest order
    total: int  # the rows that match, before ``limit``
    stages: tuple[str, ...]  # the build's stages, in pipeline order

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "shown": len(self.entries), "rows": [asdict(e) for e in self.entries]}


def escape_preview(text: str, width: int = PREVIEW_WIDTH) -> str:
    """The first ``width`` characters of ``text`` on one line: control and other unprintable characters
    (newlines, tabs, NUL, bidi controls) written as Python escapes, "…" when cut. A backslash is kept as
    it is, so a raw JSON row reads as written (``--json`` gives the stored preview unchanged)."""
    out = []
    for ch in text[:width]:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out) + ("…" if len(text) > width else "")


def list_quarantined(
    root: Path, stage: str | None = None, limit: int | None = None, *, excluded: bool = False
) -> Listing:
    """The quarantined rows of the build in ``root`` (``excluded``: the rows left out by decision instead),
    of one ``stage`` if given; raises :class:`UnknownStageError` naming the stages when it is not one."""
    manifest = Manifest.read(root)
    stages = tuple(dict.fromkeys([*(f.stage for f in manifest.files), *manifest.stages]))  # pipeline order
    if stage is not None and stage not in stages:
        raise UnknownStageError(f"--stage: no stage {stage!r} in this build; its stages: {', '.join(stages)}")
    prefix = ("excluded/" if excluded else "quarantine/") + (f"{stage}/" if stage else "")
    entries: list[QuarantineEntry] = manifest.records(BuildDir(root), prefix, "quarantine")
    if stage is not None:
        entries = [e for e in entries if e.stage == stage]
    shown = entries if limit is None else entries[:limit]
    return Listing(tuple(shown), len(entries), stages)
