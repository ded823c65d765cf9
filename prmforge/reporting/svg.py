"""Matplotlib figures as deterministic, self-contained inline SVG.

The same figure gives the same bytes: the SVG hash salt is fixed (per figure, so clip-path ids of
two figures never meet), the metadata block (creator, date) is left out, text is drawn as glyph
paths (no font is needed to show it), and the XML declaration, DOCTYPE and namespace attributes,
which name external URLs, are removed: an ``<svg>`` inside HTML needs none of them. Every ``id``
and every reference to one is prefixed with the figure's id, so several SVGs live in one page.
"""

from __future__ import annotations

import io
import re
from typing import Final

import matplotlib

matplotlib.use("Agg")

from contextlib import AbstractContextManager

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

__all__ = ["NEGATIVE", "PALETTE", "POSITIVE", "new_figure", "not_available", "style", "to_svg"]

PALETTE: Final = ("#3b6ea8", "#d9822b", "#4f9d69", "#b5435a", "#7d5ba6", "#8c8c8c", "#c9a227", "#2a9d9c")
POSITIVE: Final = "#4f9d69"
NEGATIVE: Final = "#b5435a"
_METADATA: Final = {"Creator": None, "Date": None, "Format": None, "Type": None}
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'xlink:href="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def style() -> AbstractContextManager[None]:
    """The report's matplotlib settings: build every figure and its SVG inside it."""
    return matplotlib.rc_context(
        {
            "font.family": "DejaVu Sans",
            "font.size": 9.0,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10.0,
            "svg.fonttype": "path",  # glyphs as paths: no font needed to show the text
            "svg.image_inline": True,
        }
    )


def new_figure(width: float = 8.0, height: float = 3.6) -> Figure:
    """A figure of ``width`` x ``height`` inches (no pyplot, so no global figure state)."""
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def not_available(title: str, reason: str) -> Figure:
    """An explicit figure in place of a plot whose data the build does not have."""
    fig = Figure(figsize=(8.0, 1.6), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.add_patch(
        FancyBboxPatch(
            (0.02, 0.08), 0.96, 0.84, boxstyle="round,pad=0.0,rounding_size=0.03",
            transform=ax.transAxes, facecolor="#f3f4f6", edgecolor="#9ca3af", linewidth=1.0,
        )
    )  # fmt: skip
    ax.text(0.5, 0.64, title, ha="center", va="center", fontsize=11, weight="bold", color="#374151")
    ax.text(0.5, 0.36, f"not available: {reason}", ha="center", va="center", fontsize=10, color="#b45309")
    return fig


def to_svg(fig: Figure, prefix: str) -> str:
    """``fig`` as an inline ``<svg>`` element (deterministic bytes; ids prefixed with ``prefix``)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": prefix}):
        fig.savefig(buffer, format="svg", metadata=_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _HREF.sub(lambda m: f'xlink:href="#{prefix}-{m.group(1)}"', text)
    text = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", text)
    return re.sub(r"\s+\n", "\n", text).strip()
