"""``prmforge stats``: a build's summary as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prmforge.pipelines.cli_common import console, user_errors

__all__ = ["print_summary", "stats_app"]

stats_app = typer.Typer(add_completion=False, no_args_is_help=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_summary(root: Path, summary: dict[str, Any] | None = None) -> None:
    """The tables of ``prmforge stats`` (``summary``: the build's :func:`summarize`, if already made)."""
    from prmforge.pipelines.stats import summarize

    s = summary if summary is not None else summarize(root)
    table = Table(title=f"{s['name']}  ({s['content_hash'][:16]})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("rows", s["rows"]),
        ("splits", ", ".join(f"{k}={v}" for k, v in s["splits"].items())),
        ("steps", s["steps"]),
        ("positive / negative steps", f"{s['positive_steps']} / {s['negative_steps']}"),
        ("positive share", s["positive_share"]),
        ("rollouts with a correct answer", s["rollouts_correct"]),
        ("rows left out (undecided label)", s["excluded"]),
        (
            "duplicate rows (dropped)",
            f"{s['dedup'].get('repeated_rows', 0)} ({s['dedup'].get('dropped', 0)})",
        ),
        *(
            [("near duplicates dropped", s["dedup"]["near_duplicates"])]
            if "near_duplicates" in s["dedup"]
            else []
        ),
        *(
            [
                (
                    f"balanced {split} ({b['unit']} share, target {b['target']})",
                    f"{_fmt(v['share_before'])} -> {_fmt(v['share'])} ({v['dropped']} rows dropped)",
                )
                for split, v in b["splits"].items()
            ]
            if (b := s.get("balance"))
            else []
        ),
        ("completions (cached)", f"{s['cost']['completions']} ({s['cost']['cached_completions']})"),
        ("completions per step", s["cost"]["completions_per_step"]),
        ("generated tokens", s["cost"]["generated_tokens"]),
        ("tool calls", s["cost"]["tool_calls"]),
        ("labelling seconds", s["cost"]["seconds"]),
        ("quarantined rows", s["quarantined"]),
    ]
    for label, value in rows:
        table.add_row(label, _fmt(value))
    console.print(table)
    quality = Table(
        title="labels against truth",
        caption="false +: a step labelled good at or after the true first error; "
        "false -: a step labelled bad before it",
    )
    for col in (
        "suite",
        "rows",
        "first-error F1",
        "error acc",
        "correct acc",
        "step acc",
        "false +",
        "false -",
    ):
        quality.add_column(col, justify="right")
    for suite, q in [("all", s["quality"]), *s["quality_by_suite"].items()]:
        if q is None or "rows" not in q:
            continue
        quality.add_row(
            suite,
            str(q["rows"]),
            _fmt(q["first_error_f1"]),
            _fmt(q["error_acc"]),
            _fmt(q["correct_acc"]),
            _fmt(q["step_accuracy"]),
            str(q["false_positives"]),
            str(q["false_negatives"]),
        )
    console.print(quality)
    sources = Table(
        title="each source against truth",
        caption="coverage: share of rollouts it decided; bad-step precision / recall: steps it labelled "
        "bad against truly bad steps",
    )
    for col in (
        "source", "coverage", "first-error F1", "step acc", "bad-step prec / rec", "completions", "tool calls"
    ):  # fmt: skip
        sources.add_column(col, justify="right")
    for source, q in s["quality_by_source"].items():
        cost = s["cost_by_source"][source]
        confusion = s.get("confusion_by_source", {}).get(source)
        pr = f"{_fmt(confusion['precision'])} / {_fmt(confusion['recall'])}" if confusion else "-"
        if q is None:
            sources.add_row(source, "-", "-", "-", pr, str(cost["completions"]), str(cost["tool_calls"]))
            continue
        sources.add_row(
            source, _fmt(q["coverage"]), _fmt(q.get("first_error_f1")), _fmt(q.get("step_accuracy")), pr,
            str(cost["completions"]), str(cost["tool_calls"]),
        )  # fmt: skip
    console.print(sources)
    for pair in s.get("agreement", []):
        kappa = _fmt(pair["kappa"]) if pair["kappa"] is not None else f"undefined ({pair['reason']})"
        console.print(
            f"  agreement {pair['a']} ~ {pair['b']}: Cohen's kappa {kappa} over {pair['steps']} steps"
        )
    for reason, count in s["quarantine_reasons"].items():
        console.print(f"  quarantined {count} x {reason}")
    for reason, count in s["excluded_reasons"].items():
        console.print(f"  left out {count} x {reason}")


@stats_app.command()
def stats(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    reliability_from: Annotated[
        list[str] | None,
        typer.Option(
            "--reliability-from",
            help="also estimate every other source's reliability over the whole build on the steps these "
            "sources are certain of (repeatable), and print it as `fuse.reliability`",
        ),
    ] = None,
) -> None:
    """Print the summary of a build directory."""
    from prmforge.pipelines.stats import summarize

    with user_errors(1):
        summary = summarize(directory, reliability_from or ())
        if as_json:
            console.print_json(json.dumps(summary))
            return
        print_summary(directory, summary)
        if "reliability" in summary:
            print_reliability(summary["reliability"])


def print_reliability(r: dict[str, Any]) -> None:
    refs = ", ".join(r["references"])
    table = Table(
        title=f"reliability over the whole build (on the steps {refs} are certain of)",
        caption="p: agreement under a Beta(1, 1) prior; set `rule` and `reliability` of the config's "
        "`fuse:` as below (its other settings stay) and rerun the build: it is fused again in place",
    )
    for col in ("source", "agreed", "compared", "p"):
        table.add_column(col, justify="right")
    for name, v in r["sources"].items():
        table.add_row(name, str(v["agreed"]), str(v["compared"]), _fmt(v["p"]))
    console.print(table)
    given = [f"{name}: {v['p']}" for name, v in r["sources"].items()]
    given += [f"{name}: 0.99" for name in r["references"]]  # a reference's own: the user's to give
    note = f"  # {refs}: the references, 0.99 assumed (an exact checker); give your own"
    console.print(
        f"fuse:\n  rule: weighted\n  reliability: {{{', '.join(given)}}}{note}",
        highlight=False,
        soft_wrap=True,
    )
