"""The report's plots: each a figure id, a title, a caption and an inline SVG.

A plot whose data the build does not have (no truth, one source, no training rows) is drawn as an
explicit "not available: reason" figure under the same id, never left out and never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prmforge.reporting.collect import FUSED, ReportData
from prmforge.reporting.svg import NEGATIVE, PALETTE, POSITIVE, new_figure, not_available, style, to_svg

__all__ = ["PLOT_IDS", "Plot", "render_plots"]


@dataclass(frozen=True, slots=True)
class Plot:
    id: str
    title: str
    caption: str
    svg: str
    available: bool


def _label(reason: str, width: int = 70) -> str:
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def _compact(value: float, fmt: str) -> str:
    """``fmt`` for small numbers; 12.3k, 4.56M for large ones."""
    for threshold, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / unit:.3g}{suffix}"
    return format(int(value) if fmt == "d" else value, fmt)


def _bars(ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float | None]], fmt: str) -> None:
    """Grouped bars, one colour per series; a missing value is written "n/a" instead of a bar."""
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        offset = x - 0.4 + width * (k + 0.5)
        heights = [0.0 if v is None else v for v in values]
        bars = ax.bar(offset, heights, width * 0.92, label=name, color=PALETTE[k % len(PALETTE)])
        labels = ["n/a" if v is None else _compact(v, fmt) for v in values]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(x, list(groups))
    ax.margins(y=0.15)
    top = max([v for values in series.values() for v in values if v is not None], default=0.0)
    ax.set_ylim(0.0, top * 1.15 if top > 0 else 1.0)


def label_balance(data: ReportData) -> tuple[Figure, str] | str:
    if not data.positions:
        return "the build has no training rows"
    fig = new_figure(8.0, 3.4)
    ax = fig.add_subplot()
    steps = np.arange(1, len(data.positions) + 1)
    totals = np.array([p + n for p, n in data.positions], dtype=float)
    positive = np.array([p for p, _ in data.positions]) / totals
    ax.bar(steps, positive, color=POSITIVE, label="positive (before the first error)")
    ax.bar(steps, 1 - positive, bottom=positive, color=NEGATIVE, label="negative")
    for s, total in zip(steps, totals, strict=True):
        ax.text(float(s), 1.02, f"{int(total)}", ha="center", va="bottom", fontsize=7, color="#374151")
    ax.set_xticks(steps)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("step position (1 = first step); above each bar: labelled steps")
    ax.set_ylabel("share of labels")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    share = data.summary.get("positive_share")
    overall = "" if share is None else f" Overall positive share {share:.3f}."
    return fig, f"Training labels by step position, every split.{overall}"


def first_error(data: ReportData) -> tuple[Figure, str] | str:
    if not data.first_errors:
        return "the build has no training rows"
    keys = sorted({*data.first_errors, *data.truth_first_errors})
    names = ["none" if k < 0 else str(k + 1) for k in keys]
    series: dict[str, Sequence[float | None]] = {
        f"fused label ({sum(data.first_errors.values())} rows)": [data.first_errors.get(k, 0) for k in keys]
    }
    if data.truth_first_errors:
        known = sum(data.truth_first_errors.values())
        series[f"truth ({known} rows whose truth is known)"] = [
            data.truth_first_errors.get(k, 0) for k in keys
        ]
    fig = new_figure(8.0, 3.4)
    ax = fig.add_subplot()
    _bars(ax, names, series, "d")
    ax.set_xlabel("first erroneous step (none: no error)")
    ax.set_ylabel("training rows")
    ax.legend(fontsize=8)
    truth = "" if data.truth_first_errors else " No row has known truth, so only the fused label is shown."
    return fig, f"Where the first error falls in the training rows.{truth}"


def agreement(data: ReportData) -> tuple[Figure, str] | str:
    sources = list(data.summary["cost_by_source"])
    if len(sources) < 2:
        return f"one source ({', '.join(sources)}): agreement needs two"
    pairs = {(p["a"], p["b"]): p for p in data.summary["agreement"]}
    n = len(sources)
    matrix = np.full((n, n), np.nan)
    fig = new_figure(3.4 + 1.3 * n, 1.6 + 1.0 * n)
    ax = fig.add_subplot()
    for i, a in enumerate(sources):
        for j, b in enumerate(sources):
            pair = pairs.get((a, b)) or pairs.get((b, a))
            if i == j:
                matrix[i, j], text = 1.0, "1"
            elif pair is None or pair["kappa"] is None:
                reason = "" if pair is None else pair["reason"]
                text = f"undefined\n{_label(reason, 24)}"
            else:
                matrix[i, j], text = pair["kappa"], f"{pair['kappa']:.3f}\n{pair['steps']} steps"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    image = ax.imshow(matrix, cmap="RdYlGn", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(n), sources)
    ax.set_yticks(range(n), sources)
    fig.colorbar(image, ax=ax, label="Cohen's kappa")
    return fig, "Cohen's kappa of every pair of sources over the steps both labelled (1: full agreement)."


def cost(data: ReportData) -> tuple[Figure, str] | str:
    by_source: dict[str, dict[str, Any]] = data.summary["cost_by_source"]
    sources = list(by_source)
    panels = (
        ("policy completions", ("completions",)),
        ("tokens", ("generated_tokens", "prompt_tokens")),
        ("tool calls", ("tool_calls",)),
        ("seconds", ("seconds",)),
    )
    fig = new_figure(8.0, 3.2)
    axes = fig.subplots(1, len(panels))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        series: dict[str, Sequence[float | None]] = {
            key.replace("_tokens", ""): [float(by_source[s][key]) for s in sources] for key in keys
        }
        _bars(ax, sources, series, ".4g")
        ax.yaxis.set_major_formatter(lambda v, _: _compact(v, ".4g"))
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    gen = data.summary["generation"]
    return fig, (
        f"What each label source spent. Generating the rollouts cost {gen['completion_tokens']} completion "
        f"tokens for {gen['generated_rollouts']} generated rollouts (of {gen['rollouts']})."
    )


def quality(data: ReportData) -> tuple[Figure, str] | str:
    if not data.quality:
        return "no rollout of this build has known truth (built-in suites and labelled imports do)"
    suites = list(dict.fromkeys(c.suite for c in data.quality))
    sources = list(dict.fromkeys(c.source for c in data.quality))
    cell = {(c.suite, c.source): c for c in data.quality}
    fig = new_figure(8.0, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    metrics = (("first-error F1", "first_error_f1"), ("step accuracy", "step_accuracy"))
    for ax, (title, attr) in zip(axes, metrics, strict=True):
        series = {
            s: [getattr(cell[(u, s)], attr) if (u, s) in cell else None for u in suites] for s in sources
        }
        _bars(ax, suites, series, ".2f")
        ax.set_title(title)
        ax.set_ylim(0, 1.15)
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(sources), fontsize=8
    )
    counts = ", ".join(f"{c.suite} {c.rollouts}" for c in data.quality if c.source == FUSED)
    return fig, (
        "Labels against exact truth on every rollout whose truth is known (before dedup), per suite: "
        f"each source and the {FUSED} label ({data.fusion_rule or 'no'} rule). F1 is ProcessBench's "
        f"first-error F1 on the rollouts a source decided; step accuracy compares the prefix labels its "
        f"first error implies. Rollouts with truth: {counts}."
    )


def _hbars(ax: Axes, counts: dict[tuple[str, str], int], colour: str, title: str, top: int) -> None:
    items = list(counts.items())[:top]
    labels = [_label(f"{stage}: {reason}", 72) for (stage, reason), _ in items]
    y = np.arange(len(items))
    bars = ax.barh(y, [n for _, n in items], color=colour)
    ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, loc="left")
    ax.margins(x=0.12)


def quarantine(data: ReportData) -> tuple[Figure, str] | str:
    q, e = data.summary["quarantined"], data.summary["excluded"]
    if not data.quarantined and not data.excluded:
        return f"no row was quarantined or left out ({len(data.summary['stages'])} stages checked)"
    top = 12
    panels = [(c, colour, title) for c, colour, title in (
        (data.quarantined, NEGATIVE, f"quarantined ({q} rows): stage: field: reason"),
        (data.excluded, PALETTE[5], f"left out by decision ({e} rows): stage: field: reason"),
    ) if c]  # fmt: skip
    rows = sum(min(top, len(c)) for c, _, _ in panels)
    fig = new_figure(8.0, 0.9 + 0.26 * rows + 0.5 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[min(top, len(c)) for c, _, _ in panels])
    for ax, (counts, colour, title) in zip(axes[:, 0], panels, strict=True):
        _hbars(ax, counts, colour, title, top)
    return fig, (
        f"Rows a stage could not process (quarantined: {q}) and rows left out by decision ({e}), by stage "
        f"and reason, at most {top} reasons each; `prmforge quarantine DIR` lists every row."
    )


def dedup(data: ReportData) -> tuple[Figure, str] | str:
    d: dict[str, int] = data.summary["dedup"]
    names = (
        ("repeated_rows", "exact repeats"), ("conflicting_labels", "repeats, other labels"),
        ("dropped", "dropped"), ("near_duplicates", "near duplicates"), ("clashing_ids", "clashing ids"),
        ("duplicate_questions", "questions under 2+ ids"),
    )  # fmt: skip
    shown = [(label, d[key]) for key, label in names if key in d]
    if not shown:
        return "the build recorded no dedup counts"
    fig = new_figure(8.0, 3.2)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    _bars(left, [label for label, _ in shown], {"rows": [float(n) for _, n in shown]}, "d")
    left.tick_params(axis="x", labelrotation=30, labelsize=7)
    left.set_title("dedup (exact, near, clashing)")
    balance = data.summary.get("balance")
    if balance is None:
        right.set_axis_off()
        right.text(0.5, 0.5, "split.balance off:\nlabels as built", ha="center", va="center", fontsize=9)
    else:
        splits = list(balance["splits"])
        series: dict[str, Sequence[float | None]] = {
            "before": [balance["splits"][s]["share_before"] for s in splits],
            "after": [balance["splits"][s]["share"] for s in splits],
        }
        _bars(right, splits, series, ".3f")
        right.axhline(balance["target"], color="#374151", linestyle="--", linewidth=0.8)
        right.set_ylim(0, 1.15)
        right.set_title(f"balance: {balance['unit']} positive share, target {balance['target']}")
        right.legend(fontsize=7, loc="lower left")
    dropped = "" if balance is None else f"; balance dropped {balance['dropped']} rows"
    return fig, f"Rows dedup found and dropped (exact repeats of prompt and completions{dropped})."


PLOTS: Final[tuple[tuple[str, str, Callable[[ReportData], tuple[Figure, str] | str]], ...]] = (
    ("plot-label-balance", "Label balance by step position", label_balance),
    ("plot-first-error", "First-error position", first_error),
    ("plot-agreement", "Agreement between sources", agreement),
    ("plot-cost", "Cost per source", cost),
    ("plot-quality", "Label quality against truth", quality),
    ("plot-quarantine", "Rows quarantined and left out", quarantine),
    ("plot-dedup", "Dedup and balance", dedup),
)
PLOT_IDS: Final = tuple(plot_id for plot_id, _, _ in PLOTS)


def render_plots(data: ReportData) -> list[Plot]:
    """Every plot, in the report's order, each as deterministic inline SVG."""
    out = []
    with style():
        for plot_id, title, draw in PLOTS:
            drawn = draw(data)
            if isinstance(drawn, str):
                fig, caption, available = not_available(title, drawn), f"Not available: {drawn}.", False
            else:
                (fig, caption), available = drawn, True
            out.append(Plot(plot_id, title, caption, to_svg(fig, plot_id), available))
    return out
