"""A PRM trained on the default recipe's fused labels against one trained on raw MC labels (issue #14).

One build of the built-in suites (48 `arith` + 48 GSM8K problems, the simulated policy, 4 rollouts each,
exact per-step truth) labels every rollout with vanilla Monte Carlo (N=8 on every step), the exact
equation checker and SCAN (N=4), as `bench_recipe.py` does. Training sets come from the SAME rollouts:
the default recipe's labels (equations + SCAN N=4, `earliest`), vanilla MC's (`single`), and, as a
ceiling, the suites' exact truth; each becomes rows as `assemble` makes them (prefix labels from the
first error). For each set and seed (default 0 and 1), one tiny PRM (`prmforge tiny-model`'s
~300k-parameter Llama with a new two-label head) is trained by `prmforge train`'s code with the same
configuration and number of steps (100 steps of 16 rows, about 4 epochs, on the CPU).

Each PRM is evaluated against exact truth on held-out problems (a second build: other `arith` seeds and
the next 96 GSM8K lines): ProcessBench first-error F1 at threshold 0.5 and at the threshold tuned on a
third, separate build; and Best-of-4 selection (min/last/product of the step scores) beside the oracle
and random baselines. The label sets' own F1 against truth on the training rollouts is shown beside
them. Not a test; the numbers go to the README. Prints a table (means over seeds) and writes
`.bench/train.json` (every run). About 7 minutes on 2 shared cores with `OMP_NUM_THREADS=1`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import processbench_f1
from prmforge.pipelines import tables
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.fusion import fuse
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stages.assemble import example_of
from prmforge.policies.tiny_model import write_tiny_model
from prmforge.schemas.records import FusedLabels, Problem, Rollout, StepLabels
from prmforge.training.bestofn import best_of_n
from prmforge.training.builds import example_row
from prmforge.training.config import TrainConfig
from prmforge.training.eval_metrics import f1_at, tune_threshold
from prmforge.training.scoring import PRMScorer
from prmforge.training.trainer import train

SOURCES: list[dict[str, Any]] = [
    {"kind": "mc", "n": 8, "name": "mc8"},
    {"kind": "equations"},
    {"kind": "scan", "n": 4, "name": "scan4"},
]
TRUTH = "exact truth (the ceiling of this model)"
RECIPES = {
    "fused (equations + SCAN N=4, earliest)": ("earliest", ("equations", "scan4")),
    "raw MC (N=8, single)": ("single", ("mc8",)),
}


def _read(root: Path, prefix: str, kind: str) -> list[Any]:
    build = BuildDir(root)
    return [
        r for e in Manifest.read(root).under(prefix) for r in tables.decode(kind, build.read_table(e.entry))
    ]


def _build(
    root: Path, problems: int, arith_seed: int, gsm8k_offset: int, annotate: list[dict[str, Any]]
) -> Path:
    config = parse_config(
        {
            "name": f"bench-train-{arith_seed}",
            "seed": 7,
            "inputs": [
                {"kind": "arith", "count": problems, "min_steps": 3, "max_steps": 9, "seed": arith_seed},
                {"kind": "gsm8k", "offset": gsm8k_offset, "limit": problems},
            ],
            "generate": {"rollouts_per_problem": 4},
            "annotate": annotate,
            "fuse": {"rule": "single", "source": annotate[0].get("name", annotate[0]["kind"])},
            "runner": {"workers": 0, "shard_size": 16, "cache": False},
        }
    )
    LocalRunner().run(config, root)
    return root


def _label_sets(root: Path) -> tuple[dict[str, list[Any]], dict[str, dict[str, float]]]:
    """Per recipe, the training rows (as assemble makes them) and the labels' own F1 against truth."""
    problems: dict[str, Problem] = {p.problem_id: p for p in _read(root, "stages/load/", "problem")}
    rollouts: list[Rollout] = _read(root, "stages/generate/", "rollout")
    labels: dict[str, dict[str, StepLabels]] = {
        s: {lab.rollout_id: lab for lab in _read(root, f"stages/annotate-{s}/", "labels")}
        for s in ("mc8", "equations", "scan4")
    }
    rows: dict[str, list[Any]] = {}
    quality: dict[str, dict[str, float]] = {}
    for title, (rule, sources) in RECIPES.items():
        kept, predicted, truth = [], [], []
        for r in rollouts:
            fused = fuse(rule, [labels[s][r.rollout_id] for s in sources], len(r.steps), sources[0])
            if fused.first_error is None:
                continue
            kept.append(example_row(example_of(problems[r.problem_id], r, fused, "negative", "train")))
            if r.truth is not None:
                predicted.append(fused.first_error)
                truth.append(r.truth.first_error)
        rows[title] = kept
        score = processbench_f1(predicted, truth)
        quality[title] = {"rows": len(kept), "labels_f1_vs_truth": round(score.f1, 4)}
    exact = [  # the suites' exact truth as labels: what this model could learn from perfect labels
        example_row(example_of(problems[r.problem_id], r, _truth_label(r), "negative", "train"))
        for r in rollouts
        if r.truth is not None
    ]
    rows[TRUTH], quality[TRUTH] = exact, {"rows": len(exact), "labels_f1_vs_truth": 1.0}
    return rows, quality


def _truth_label(rollout: Rollout) -> FusedLabels:
    assert rollout.truth is not None
    steps = len(rollout.steps)
    return FusedLabels(rollout.rollout_id, "truth", rollout.truth.first_error, (None,) * steps, (), 1.0)


def _evaluate(model: Path, held_out: Path, tune: Path) -> dict[str, Any]:
    scorer = PRMScorer(str(model), device="cpu", batch_size=16)

    def scored(root: Path) -> tuple[list[tuple[float | None, ...]], list[int], list[Rollout]]:
        problems = {p.problem_id: p for p in _read(root, "stages/load/", "problem")}
        rollouts = [r for r in _read(root, "stages/generate/", "rollout") if r.truth is not None]
        results = scorer.score([(problems[r.problem_id].question, r.steps) for r in rollouts])
        return [s.scores for s in results], [r.truth.first_error for r in rollouts], rollouts

    tune_scores, tune_labels, _ = scored(tune)
    choice = tune_threshold(tune_scores, tune_labels)
    scores, labels, rollouts = scored(held_out)
    at_half, tuned = f1_at(scores, labels, 0.5), f1_at(scores, labels, choice.threshold)
    groups: dict[str, list[tuple[tuple[float | None, ...], bool]]] = defaultdict(list)
    for rollout, s in zip(rollouts, scores, strict=True):
        groups[rollout.problem_id].append((s, rollout.outcome is True))
    bon = best_of_n(groups)
    scorer.close()
    return {
        "f1_at_0.5": round(at_half.f1, 4),
        "error_acc_at_0.5": round(at_half.error_acc, 4),
        "correct_acc_at_0.5": round(at_half.correct_acc, 4),
        "tuned_threshold": round(choice.threshold, 4),
        "f1_at_tuned": round(tuned.f1, 4),
        "error_acc_at_tuned": round(tuned.error_acc, 4),
        "correct_acc_at_tuned": round(tuned.correct_acc, 4),
        "best_of_4": {k: round(v, 4) for k, v in bon.accuracy.items()},
        "best_of_4_oracle": round(bon.oracle, 4),
        "best_of_4_random": round(bon.random, 4),
        "held_out_rollouts": len(rollouts),
    }


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.fmean(r[key] for r in runs), 4)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=48, help="arith and GSM8K problems to train on")
    parser.add_argument("--held-out", type=int, default=96, help="arith and GSM8K problems held out")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps of each PRM (~4 epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one PRM per label set and seed")
    args = parser.parse_args()
    config = TrainConfig(max_steps=args.steps, batch_size=16, learning_rate=2e-3, warmup_steps=10)
    began = time.perf_counter()
    report: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "problems": args.problems,
        "held_out": args.held_out,
        "seeds": args.seeds,
        "prms": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "tiny-model"
        write_tiny_model(base)
        train_root = _build(tmp / "train", args.problems, 0, 0, SOURCES)
        equations = [{"kind": "equations"}]  # the held-out builds need rollouts and truth, no labels
        held_out = _build(tmp / "held-out", args.held_out, 1000, args.problems, equations)
        tune = _build(tmp / "tune", args.problems // 2, 2000, args.problems + args.held_out, equations)
        report["build_seconds"] = round(time.perf_counter() - began, 1)
        rows, quality = _label_sets(train_root)
        for n, (title, kept) in enumerate(rows.items()):
            data = tmp / f"rows-{n}.jsonl"  # the rows as `prmforge export --format trl` writes them
            data.write_text(
                "".join(
                    json.dumps(
                        {"prompt": r.prompt, "completions": list(r.completions), "labels": list(r.labels)}
                    )
                    + "\n"
                    for r in kept
                )
            )
            runs = []
            for seed in args.seeds:
                started = time.perf_counter()
                out = tmp / f"prm-{n}-{seed}"
                result = train(data, str(base), out, config.model_copy(update={"seed": seed}))
                runs.append(
                    {
                        "seed": seed,
                        "train_seconds": round(time.perf_counter() - started, 1),
                        "last_loss": round(result.last_loss or float("nan"), 4),
                        **_evaluate(out, held_out, tune),
                    }
                )
            keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "train_seconds"]
            report["prms"][title] = {
                **quality[title],
                "mean": {k: _mean(runs, k) for k in keys}
                | {
                    f"best_of_4_{how}": round(statistics.fmean(r["best_of_4"][how] for r in runs), 4)
                    for how in ("min", "last", "product")
                },
                "runs": runs,
            }
    report["seconds"] = round(time.perf_counter() - began, 1)
    _print(report)
    out_dir = Path(".bench")
    out_dir.mkdir(exist_ok=True)
    (out_dir / "train.json").write_text(json.dumps(report, indent=2) + "\n")


def _print(report: dict[str, Any]) -> None:
    prms = report["prms"]
    print(
        f"trained on {report['problems']} arith + {report['problems']} GSM8K problems x 4 rollouts, held out "
        f"{report['held_out']} + {report['held_out']}; {report['config']['max_steps']} steps, batch "
        f"{report['config']['batch_size']}, seeds {report['seeds']} (means below); "
        f"{report['seconds']} s in all"
    )
    print(
        f"{'training labels':<44} {'rows':>5} {'label F1':>9} {'F1@0.5':>7} {'thr':>6} {'F1@thr':>7} "
        f"{'BoN min':>8} {'BoN last':>9} {'BoN prod':>9}"
    )
    for title, r in prms.items():
        m = r["mean"]
        print(
            f"{title:<44} {r['rows']:>5} {r['labels_f1_vs_truth']:>9.3f} {m['f1_at_0.5']:>7.3f} "
            f"{m['tuned_threshold']:>6.3f} {m['f1_at_tuned']:>7.3f} {m['best_of_4_min']:>8.3f} "
            f"{m['best_of_4_last']:>9.3f} {m['best_of_4_product']:>9.3f}"
        )
    run = next(iter(prms.values()))["runs"][0]
    print(
        f"held-out rollouts {run['held_out_rollouts']}; "
        f"Best-of-4 oracle {run['best_of_4_oracle']:.3f}, random {run['best_of_4_random']:.3f}"
    )


if __name__ == "__main__":
    main()
