"""``prmforge train`` and ``prmforge eval``: fine-tune a PRM on a build (or TRL rows) and evaluate it.

The lead mounts :data:`train_app` on the main app (``app.add_typer(train_app)`` adds both commands).
Multi-GPU: ``accelerate launch --multi_gpu --num_processes N -m prmforge.training train --data ... --model
... --output ...`` (or ``torchrun --nproc_per_node N -m prmforge.training ...``) runs the same command on
every process (:mod:`prmforge.training.__main__`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prmforge.pipelines.cli_common import console, err_console, user_errors

__all__ = ["train_app"]

train_app = typer.Typer(add_completion=False, no_args_is_help=True)
_FORMATS = ("token-classification", "qwen-step-reward")


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


@train_app.command("train")
def train_command(
    data: Annotated[
        Path,
        typer.Option("--data", help="a build directory, or a TRL stepwise .parquet/.jsonl file or folder"),
    ],
    model: Annotated[str, typer.Option("--model", help="a local model folder or a Hub name")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the PRM and its checkpoints")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML training configuration")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="optimizer steps (overrides the config's)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the newest checkpoint")] = False,
) -> None:
    """Fine-tune a token-classification PRM: each step's label on the last token of its separator."""
    from prmforge.training.config import TrainConfig, load_train_config

    with user_errors(2):
        cfg = load_train_config(config) if config is not None else TrainConfig()
    cfg = cfg.with_max_steps(max_steps)
    try:
        from prmforge.training.trainer import train
    except ImportError as err:  # pragma: no cover - the train extra is missing
        err_console.print(f"[red]error[/red] train needs torch, transformers and accelerate: {err}")
        raise typer.Exit(2) from None
    with user_errors(1):
        try:
            result = train(data, model, output, cfg, resume=resume)
        except OSError as err:  # a model folder or Hub name that does not load
            err_console.print(f"[red]error[/red] --model: cannot load {model!r}: {err}")
            raise typer.Exit(1) from None
    if not result.main_process:
        return
    if not result.completed:
        console.print(f"stopped at step {result.step} of {result.total_steps}; --resume continues")
        return
    if result.resumed_from is not None:
        console.print(f"resumed from step {result.resumed_from}")
    d = result.data
    console.print(
        f"trained {result.step} steps on {d['rows_trained']} rows ({d['steps_labelled']} labelled steps; "
        f"{d['rows_dropped']} rows and {d['steps_cut']} steps cut at max_length); last loss "
        f"{result.last_loss:.4f}; wrote {output}"
    )
    if result.eval:
        e = result.eval
        console.print(
            f"eval ({int(e['rows'])} rows): loss {e['loss']:.4f}, step accuracy {_pct(e['step_accuracy'])}, "
            f"first-error F1 {_pct(e['first_error_f1'])}"
        )


@train_app.command("eval")
def eval_command(
    model_dir: Annotated[
        str, typer.Argument(help="the PRM: a `prmforge train` output folder, or a Hub name")
    ],
    inputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", help="first-error labels (ProcessBench JSON list or JSONL); repeat per subset"
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="a step below it is an error")] = 0.5,
    tune_on: Annotated[
        Path | None, typer.Option("--tune-on", help="a SEPARATE labelled file to tune the threshold on")
    ] = None,
    build: Annotated[
        Path | None, typer.Option("--build", help="a build: Best-of-N over its rollouts")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="token-classification or qwen-step-reward")] = _FORMATS[
        0
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="solutions per forward pass")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    trust_remote_code: Annotated[bool, typer.Option(help="needed by Qwen2.5-Math-PRM's own code")] = False,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="also write the report here")] = None,
) -> None:
    """ProcessBench F1 of a PRM's first-error predictions, and its Best-of-N selection on a build."""
    if not inputs and build is None:
        raise typer.BadParameter("give --input FILE (first-error labels) and/or --build DIR")
    if fmt not in _FORMATS:
        raise typer.BadParameter(f"{fmt!r}: choose {' or '.join(_FORMATS)}", param_hint="--format")
    for path in [*(inputs or []), *([tune_on] if tune_on else [])]:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--input/--tune-on")
    from prmforge.training.evaluate import evaluate_build, evaluate_files
    from prmforge.training.scoring import PRMScorer

    report: dict[str, object] = {}
    with user_errors(1):
        try:
            scorer = PRMScorer(
                model_dir,
                format=fmt,  # type: ignore[arg-type]  # checked against _FORMATS above
                device=device,
                batch_size=batch_size,
                trust_remote_code=trust_remote_code,
            )
        except OSError as err:
            err_console.print(f"[red]error[/red] cannot load the PRM {model_dir!r}: {err}")
            raise typer.Exit(1) from None
        if inputs:
            files = evaluate_files(
                scorer, inputs, threshold=threshold, tune_on=tune_on, model=scorer.describe()
            )
            report["first_error"] = files.to_dict()
            table = Table(title=f"first-error F1 of {model_dir} (x100; ProcessBench run_eval.py)")
            for column in ("subset", "items", "threshold", "error acc", "correct acc", "F1"):
                table.add_column(column, justify="left" if column == "subset" else "right")
            for s in files.subsets:
                runs = [(s.threshold, s.score)]
                if files.tuned is not None and s.tuned_score is not None:
                    runs.append((files.tuned.threshold, s.tuned_score))
                for t, score in runs:
                    table.add_row(
                        s.name,
                        str(s.items),
                        f"{t:.4g}",
                        _pct(score.error_acc),
                        _pct(score.correct_acc),
                        _pct(score.f1),
                    )
            table.add_row("mean", "", f"{threshold:.4g}", "", "", _pct(files.mean_f1))
            if files.tuned is not None and files.mean_tuned_f1 is not None:
                table.add_row("mean", "", f"{files.tuned.threshold:.4g}", "", "", _pct(files.mean_tuned_f1))
                console.print(
                    f"threshold {files.tuned.threshold:.4g} tuned on {tune_on} (F1 there "
                    f"{_pct(files.tuned.score.f1)}, {files.tuned.candidates} candidates)"
                )
            console.print(table)
        if build is not None:
            result = evaluate_build(scorer, build)
            report["best_of_n"] = result.to_dict()
            r = result.result
            table = Table(title=f"Best-of-N on {build} ({r.problems} problems, {r.rollouts} rollouts)")
            table.add_column("selector")
            table.add_column("accuracy", justify="right")
            for how, acc in r.accuracy.items():
                table.add_row(f"PRM, {how} of the step scores", _pct(acc))
            table.add_row("oracle (any rollout correct)", _pct(r.oracle))
            table.add_row("random pick (expected)", _pct(r.random))
            console.print(table)
            if result.ungraded:
                console.print(f"{result.ungraded} rollouts had no graded outcome (counted as not correct)")
        scorer.close()
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
