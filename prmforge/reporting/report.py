"""``prmforge report``: one self-contained HTML file about a build (inline CSS and SVG, no URL at all).

The page holds a header table (name, content and config hashes, splits, rows, sources) and the plots
of :mod:`prmforge.reporting.plots`, each in a ``<figure id="plot-...">``. The same build gives the
same bytes: nothing time-, host- or path-dependent is written.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Final

from prmforge.pipelines.runners.builddir import atomic_write_bytes
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.reporting.collect import ReportData, collect
from prmforge.reporting.plots import Plot, render_plots

__all__ = ["render_report", "write_report"]

_CSS: Final = """
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2937;
background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 6px}
p.lede{color:#4b5563;margin:0 0 16px}
table.header{border-collapse:collapse;margin:0 0 20px;font-size:13px}
table.header th{text-align:left;padding:4px 12px 4px 0;color:#4b5563;font-weight:600;vertical-align:top}
table.header td{padding:4px 0;font-family:"DejaVu Sans Mono",monospace;word-break:break-all}
figure{margin:0 0 22px;padding:12px;border:1px solid #e5e7eb;border-radius:6px}
figure svg{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#4b5563;margin-top:6px}
figure.unavailable{background:#fafafa}
nav{font-size:12px;margin:0 0 16px}nav a{margin-right:12px;color:#3b6ea8}
"""


def _header(data: ReportData, config_hash: str) -> str:
    s = data.summary
    splits = ", ".join(f"{name} {rows}" for name, rows in s["splits"].items())
    share = "-" if s["positive_share"] is None else f"{s['positive_share']:.4f}"
    rows = (
        ("name", s["name"]),
        ("content hash", s["content_hash"]),
        ("config hash", config_hash),
        ("splits (rows)", splits),
        ("rows", str(s["rows"])),
        ("steps (positive share)", f"{s['steps']} ({share})"),
        ("label sources", ", ".join(s["cost_by_source"]) or "-"),
        ("fusion rule", data.fusion_rule or "-"),
        ("quarantined / left out", f"{s['quarantined']} / {s['excluded']}"),
    )
    cells = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="header" id="build-header">\n{cells}\n</table>'


def _figure(plot: Plot) -> str:
    css = "" if plot.available else ' class="unavailable"'
    return (
        f'<figure id="{plot.id}"{css} data-available="{str(plot.available).lower()}">\n'
        f"<h2>{escape(plot.title)}</h2>\n{plot.svg}\n"
        f"<figcaption>{escape(plot.caption)}</figcaption>\n</figure>"
    )


def render_report(root: Path) -> str:
    """The report's HTML for the build in ``root``."""
    data = collect(root)
    config_hash = Manifest.read(root).config_hash
    plots = render_plots(data)
    name = escape(data.summary["name"])
    nav = " ".join(f'<a href="#{p.id}">{escape(p.title)}</a>' for p in plots)
    body = "\n".join(_figure(p) for p in plots)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>prmforge report: {name}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>prmforge report: {name}</h1>\n"
        '<p class="lede">Read from the files the build\'s manifest lists.</p>\n'
        f"{_header(data, config_hash)}\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


def write_report(root: Path, output: Path | None = None) -> Path:
    """Write the report (atomically) to ``output``, by default ``root/report.html``; returns the path."""
    target = output if output is not None else root / "report.html"
    atomic_write_bytes(target, render_report(root).encode("utf-8"))
    return target
