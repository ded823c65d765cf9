"""``prmforge report``: one self-contained, deterministic HTML file with every plot, rendered by Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from reporting_builds import cli, one_source, two_sources
from typer.testing import CliRunner

from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stats import summarize
from prmforge.reporting.collect import FUSED, collect
from prmforge.reporting.plots import PLOT_IDS
from prmforge.reporting.report import render_report, write_report
from prmforge.reporting.svg import new_figure, style, to_svg

CHROMIUM = Path("/usr/bin/chromium")


class _Page(HTMLParser):
    """Per figure id: whether it holds an <svg>, its data-available flag and its caption; the header rows."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, object]] = {}
        self.header: list[tuple[str, str]] = []
        self._figure: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and a.get("id"):
            self._figure = str(a["id"])
            self.figures[self._figure] = {"svg": False, "available": a.get("data-available"), "caption": ""}
        elif tag == "svg" and self._figure is not None:
            self.figures[self._figure]["svg"] = True
        elif tag == "figcaption":
            self._in_caption = True
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "figcaption":
            self._in_caption = False
        elif tag in ("th", "td") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self.header.append((self._row[0], self._row[1]))
            self._row = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_caption and self._figure is not None:
            self.figures[self._figure]["caption"] = str(self.figures[self._figure]["caption"]) + data


_HTML: dict[Path, str] = {}


def _html(root: Path) -> str:
    """The report of ``root``, rendered once per test process (a render takes about a second)."""
    if root not in _HTML:
        _HTML[root] = render_report(root)
    return _HTML[root]


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_every_plot_is_a_figure_holding_an_svg(tmp_path_factory: pytest.TempPathFactory) -> None:
    page = _parse(_html(two_sources(tmp_path_factory)))
    assert list(page.figures) == list(PLOT_IDS)
    assert all(f["svg"] for f in page.figures.values())
    assert {i: f["available"] for i, f in page.figures.items()} == dict.fromkeys(PLOT_IDS, "true")


def test_the_header_names_the_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = two_sources(tmp_path_factory)
    manifest = Manifest.read(root)
    s = summarize(root)
    splits = ", ".join(f"{k} {v}" for k, v in manifest.splits.items())
    assert _parse(_html(root)).header == [
        ("name", "two-sources"),
        ("content hash", manifest.content_hash),
        ("config hash", manifest.config_hash),
        ("splits (rows)", splits),
        ("rows", str(sum(manifest.splits.values()))),
        ("steps (positive share)", f"{s['steps']} ({s['positive_share']:.4f})"),
        ("label sources", "mc, equations"),
        ("fusion rule", "earliest"),
        ("quarantined / left out", f"2 / {s['excluded']}"),
    ]


def test_the_page_is_self_contained_and_the_same_build_gives_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = two_sources(tmp_path_factory)
    first = _html(root)
    assert render_report(root) == first
    for needle in ("http:", "https:", "//", "<script", "<link", "<img", "src=", "@import", "xmlns"):
        assert needle not in first, needle
    assert re.findall(r"url\((?!#)", first) == []
    ids = re.findall(r'\bid="([^"]+)"', first)
    assert len(ids) == len(set(ids)), "an id repeats across the inline SVGs"


def test_missing_data_gives_an_explicit_figure(tmp_path_factory: pytest.TempPathFactory) -> None:
    page = _parse(_html(one_source(tmp_path_factory)))
    assert list(page.figures) == list(PLOT_IDS)
    assert all(f["svg"] for f in page.figures.values())
    unavailable = {i: f["caption"] for i, f in page.figures.items() if f["available"] == "false"}
    assert unavailable == {
        "plot-agreement": "Not available: one source (equations): agreement needs two.",
        "plot-quality": "Not available: no rollout of this build has known truth (built-in suites and "
        "labelled imports do).",
    }


def test_collect_counts_what_the_plots_show(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = two_sources(tmp_path_factory)
    data = collect(root)
    s = data.summary
    assert sum(p + n for p, n in data.positions) == s["steps"]
    assert sum(p for p, _ in data.positions) == s["positive_steps"]
    assert sum(data.first_errors.values()) == s["rows"] == sum(data.truth_first_errors.values())
    assert data.quarantined == {
        ("load", "answer: last computed value 20 differs from the gold answer 5"): 1,
        ("load", "answer: no calculator annotations <<expr=value>> to replay"): 1,
    }
    cells = {(c.suite, c.source): c for c in data.quality}
    assert sorted({suite for suite, _ in cells}) == ["all", "arith", "gsm8k"]
    assert sorted({source for _, source in cells}) == sorted(["mc", "equations", FUSED])
    for source in ("mc", "equations"):  # the same numbers as `prmforge stats`
        q = s["quality_by_source"][source]
        assert cells[("all", source)].decided == q["decided"]
        assert round(cells[("all", source)].first_error_f1 or 0.0, 4) == q["first_error_f1"]
        assert round(cells[("all", source)].step_accuracy or 0.0, 4) == q["step_accuracy"]
    assert (
        cells[("all", FUSED)].rollouts == cells[("arith", FUSED)].rollouts + cells[("gsm8k", FUSED)].rollouts
    )


def test_svg_ids_are_prefixed_and_the_bytes_fixed() -> None:
    def draw() -> str:
        with style():
            fig = new_figure(3, 2)
            fig.add_subplot().bar([0, 1], [1, 2])
            return to_svg(fig, "plot-x")

    svg = draw()
    assert svg == draw()
    assert svg.startswith("<svg ")
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids
    assert all(i.startswith("plot-x-") for i in ids)
    assert all(ref.startswith("plot-x-") for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', svg))


def test_the_report_command(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = two_sources(tmp_path_factory)
    run = CliRunner().invoke(cli(), ["report", str(root), "--output", str(tmp_path / "r.html")])
    assert run.exit_code == 0, run.output
    assert " ".join(run.output.split()) == f"wrote {tmp_path / 'r.html'}"
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == _html(root)
    assert write_report(root) == root / "report.html"  # the default place
    assert (root / "report.html").read_text(encoding="utf-8") == _html(root)
    missing = CliRunner().invoke(cli(), ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert " ".join(missing.output.split()) == f"error {tmp_path / 'nope'}: does not exist"


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (scripts/install-system-deps.sh)"
)
def test_chromium_renders_every_plot(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from PIL import Image

    html = write_report(two_sources(tmp_path_factory), tmp_path / "report.html")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,4000",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [str(CHROMIUM), *flags, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert shot.exists()
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    pixels = np.asarray(image).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    ink = float(np.mean(np.any(pixels != 255, axis=1)))
    assert colours > 200, f"only {colours} distinct colours: a blank page?"
    assert ink > 0.10, f"only {ink:.3f} of the page is not white"
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", html.as_uri()], capture_output=True, timeout=120, text=True
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _parse(dom.stdout)
    assert list(page.figures) == list(PLOT_IDS)
    assert all(f["svg"] for f in page.figures.values())
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
