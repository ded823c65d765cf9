"""The ``prmforge`` command line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from prmforge.pipelines.cli_eval import eval_app
from prmforge.pipelines.cli_grade import grade_app
from prmforge.pipelines.cli_trees import trees_app
from prmforge.pipelines.config import BuildConfig, load_config
from prmforge.pipelines.runners.builddir import GLOBAL
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import PrmforgeError
from prmforge.verifiers.sandbox.cli import sandbox_app

app = typer.Typer(
    help="Build process-reward-model training data.", no_args_is_help=True, add_completion=False
)
# Wide enough for the summary tables when the output is a pipe or a log file.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


class StageBoard:
    """Live per-stage counts while a build runs."""

    def __init__(self, num_shards: int, stages: tuple[str, ...]) -> None:
        self.num_shards = num_shards
        self.rows: dict[str, dict[str, float]] = {
            s: {
                "shards": 0,
                "resumed": 0,
                "in": 0,
                "out": 0,
                "quarantined": 0,
                "seconds": 0.0,
                "generate": 0.0,
            }
            for s in stages
        }
        self.started = time.perf_counter()

    def __call__(self, event: StageEvent) -> None:
        row = self.rows.setdefault(
            event.stage,
            {"shards": 0, "resumed": 0, "in": 0, "out": 0, "quarantined": 0, "seconds": 0.0, "generate": 0.0},
        )
        row["shards"] += 1
        row["global"] = float(event.shard == GLOBAL)  # a global stage runs once, over every shard
        row["resumed"] += int(event.resumed)
        row["in"] += event.counts.rows_in
        row["out"] += event.counts.rows_out
        row["quarantined"] += event.counts.quarantined
        row["seconds"] += event.seconds
        row["generate"] += event.generate_seconds

    def render(self) -> Table:
        table = Table(title=f"build progress ({time.perf_counter() - self.started:.1f}s)")
        table.add_column("stage")
        table.add_column("progress", width=24)
        for col in ("shards", "rows in", "rows out", "quarantined", "stage s", "in generate s"):
            table.add_column(col, justify="right")
        for stage, r in self.rows.items():
            total = 1 if r.get("global") else self.num_shards
            done = f"{int(r['shards'])}/{total}" + (f" ({int(r['resumed'])} resumed)" if r["resumed"] else "")
            table.add_row(
                stage,
                ProgressBar(total=total, completed=int(r["shards"]), width=24),
                done,
                str(int(r["in"])),
                str(int(r["out"])),
                str(int(r["quarantined"])),
                f"{r['seconds']:.1f}",
                f"{r['generate']:.1f}",
            )
        return table


@contextmanager
def user_errors(exit_code: int, prefix: str = "") -> Iterator[None]:
    """Our own errors end the command with their message (naming the field) and an exit code, no traceback."""
    try:
        yield
    except PrmforgeError as err:
        err_console.print(f"[red]error[/red] {prefix}{err}")
        raise typer.Exit(exit_code) from None


def _load(config: Path) -> BuildConfig:
    with user_errors(2):
        return load_config(config)


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="YAML build configuration")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="build directory (overrides the config)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (0: in this process)")] = None,
    restart: Annotated[bool, typer.Option(help="discard an existing build in the output directory")] = False,
) -> None:
    """Run a build; rerunning the same build resumes it, skipping committed shards.

    Adding annotators to a finished build's config (and changing `fuse:`) grows it in place: only the new
    sources and what depends on them are computed. Ctrl-C stops it; rerun to resume.
    """
    from prmforge.pipelines.runners.interrupt import EXIT_INTERRUPTED, BuildInterrupted
    from prmforge.pipelines.runners.local import LocalRunner

    cfg = _load(config)
    out = output or cfg.output
    if out is None:
        err_console.print("[red]error[/red] output: give --output or set `output:` in the configuration")
        raise typer.Exit(2)
    if workers is not None and workers < 0:
        err_console.print(f"[red]error[/red] --workers: must be >= 0 (got {workers})")
        raise typer.Exit(2)
    with user_errors(1):
        board = StageBoard(0, ())  # the runner tells the shard count once it has planned
        try:
            with Live(board.render(), console=console, refresh_per_second=4, transient=False) as live:

                def on_event(event: StageEvent) -> None:
                    board(event)
                    live.update(board.render())

                def on_plan(num_shards: int) -> None:
                    board.num_shards = num_shards
                    live.update(board.render())

                result = LocalRunner(on_event, on_plan).run(cfg, out, restart=restart, workers=workers)
        except (BuildInterrupted, KeyboardInterrupt) as err:
            message = str(err) if isinstance(err, BuildInterrupted) else "interrupted; rerun to resume"
            err_console.print(message)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print()
    verb = "resumed" if result.resumed else "built"
    grown = f"; grew by {', '.join(result.grown)}" if result.grown else ""
    console.print(
        f"{verb} {out}: {result.shards_run} shard(s) run, {result.shards_skipped} already committed{grown}"
    )
    _print_summary(out)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning[/yellow] {warning}")
    if result.problems:
        for problem in result.problems:
            err_console.print(f"[red]error[/red] {problem}")
        raise typer.Exit(1)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _print_summary(root: Path) -> None:
    from prmforge.pipelines.stats import summarize

    s = summarize(root)
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


@app.command()
def stats(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Print the summary of a build directory."""
    from prmforge.pipelines.stats import summarize

    with user_errors(1):
        if as_json:
            console.print_json(json.dumps(summarize(directory)))
        else:
            _print_summary(directory)


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="trl (prompt/completions/labels), math-shepherd (ки +/-), qwen (<extra_0>)"
        ),
    ] = "trl",
    split: Annotated[str, typer.Option(help="train, validation or test")] = "train",
) -> None:
    """Write a build's rows as JSONL in an external PRM training format."""
    from prmforge.pipelines.export import export_jsonl

    if split not in ("train", "validation", "test"):
        err_console.print(f"[red]error[/red] --split: must be one of train, validation, test (got {split!r})")
        raise typer.Exit(2)
    if fmt not in ("trl", "math-shepherd", "qwen"):
        err_console.print(f"[red]error[/red] --format: must be one of trl, math-shepherd, qwen (got {fmt!r})")
        raise typer.Exit(2)
    with user_errors(1):
        count = export_jsonl(directory, fmt, output, split)  # type: ignore[arg-type]
    console.print(f"wrote {count} {split} rows to {output} ({fmt})")


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="YAML build configuration")]) -> None:
    """Check a configuration without running it: inputs readable, sources able to label them."""
    from prmforge.pipelines.engines import check_policy
    from prmforge.pipelines.graph import compose
    from prmforge.pipelines.sources import open_inputs, parsers_of

    cfg = _load(config)
    with user_errors(2, prefix=f"{config}: "):
        check_policy(cfg)
        readers = open_inputs(cfg)
        graph = compose(cfg, parsers_of(readers))
        counts = [sum(r.stop - r.start for r in reader.plan(cfg.runner.shard_size)) for reader in readers]
    for position, count in enumerate(counts):
        if count == 0:
            err_console.print(f"[yellow]warning[/yellow] inputs.{position}: its range holds 0 rows")
    console.print(
        f"{config}: valid ({len(cfg.inputs)} input(s), {sum(counts)} input rows, "
        f"stages {', '.join(graph.names)}, config hash {cfg.content_hash()[:16]})"
    )


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the model and tokenizer into")],
    seed: Annotated[int, typer.Option(help="seed of the random weights")] = 0,
) -> None:
    """Write a randomly initialised causal LM (~300k parameters) and a tokenizer trained on the built-in
    suites, in Hugging Face format: smoke-test any engine with no download (its text is gibberish)."""
    try:
        from prmforge.policies.tiny_model import TinyModelSpec, write_tiny_model
    except ImportError as err:  # pragma: no cover - the models extra is missing
        err_console.print(
            f"[red]tiny-model needs torch and transformers: pip install 'prmforge[models]' ({err})"
        )
        raise typer.Exit(code=2) from None
    if out_dir.exists() and any(out_dir.iterdir()):
        raise typer.BadParameter(f"{out_dir} exists and is not empty", param_hint="OUT_DIR")
    summary = write_tiny_model(out_dir, TinyModelSpec(seed=seed))
    console.print(
        f"wrote {summary['architecture']} with {summary['parameters']:,} parameters and a "
        f"{summary['vocab_size']}-token tokenizer to {out_dir}"
    )


app.add_typer(eval_app)
app.add_typer(trees_app)
app.add_typer(grade_app)
app.add_typer(sandbox_app, name="sandbox")


if __name__ == "__main__":
    app()
