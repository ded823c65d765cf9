"""The ``prmforge`` command line: the commands of each ``cli_*`` module under one app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prmforge.pipelines.cli_build import build_app
from prmforge.pipelines.cli_builds import builds_app, schedule_app, scheduler_app
from prmforge.pipelines.cli_common import console, err_console, load_or_exit, user_errors
from prmforge.pipelines.cli_eval import eval_app
from prmforge.pipelines.cli_export import export_app
from prmforge.pipelines.cli_grade import grade_app
from prmforge.pipelines.cli_report import report_app
from prmforge.pipelines.cli_stats import stats_app
from prmforge.pipelines.cli_train import train_app
from prmforge.pipelines.cli_trees import trees_app
from prmforge.verifiers.sandbox.cli import sandbox_app

app = typer.Typer(
    help="Build process-reward-model training data.", no_args_is_help=True, add_completion=False
)


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="YAML build configuration")]) -> None:
    """Check a configuration without running it: inputs readable, sources able to label them."""
    from prmforge.pipelines.engines import check_policy
    from prmforge.pipelines.graph import compose
    from prmforge.pipelines.sources import open_inputs, parsers_of

    cfg = load_or_exit(config)
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


app.add_typer(build_app)
app.add_typer(stats_app)
app.add_typer(export_app)
app.add_typer(report_app)
app.add_typer(builds_app, name="builds")
app.add_typer(schedule_app, name="schedule")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(eval_app)
app.add_typer(trees_app)
app.add_typer(train_app)
app.add_typer(grade_app)
app.add_typer(sandbox_app, name="sandbox")


if __name__ == "__main__":
    app()
