"""The headline (issue #11): vanilla Monte Carlo against the default recipe, on the same rollouts.

One build of the quickstart's inputs (48 `arith` + 48 GSM8K problems, 4 rollouts each) labels every
rollout with vanilla MC (N=8 on every step), the exact equation checker and SCAN (self-confidence
filter, early stop on incorrect rollouts only; SCAN's own error rule, c_t = 0, and GenPRM's relative
progress, c_t < 0.5 c_{t-1}) and the vouch source (completions after the step before the equations'
first failure, on grounded prefixes); then fuses the stored labels offline by several rules (the pure
functions of `prmforge.pipelines.fusion`) and scores each against exact truth: first-error F1,
coverage (rollouts decided) and policy tokens per labelled step.

The default recipe (`configs/recipe.yaml`) is the row that says so. The ratio 0.5 was chosen on this build
(seed 7); `--seed 8` runs the same rows on other `arith` problems and other rollouts, a held-out
check. `--streams K` (default 3) adds the default recipe on K more SCAN sources, each drawing its own
completions (and a vouch source of its own): how much the N=4 noise moves the score. Not a test; the
numbers go to the README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import processbench_f1
from prmforge.pipelines import tables
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.fusion import FusionParams, fuse
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.records import Rollout, StepLabels

SOURCES: list[dict[str, Any]] = [
    {"kind": "mc", "n": 8, "name": "mc8"},
    {"kind": "equations"},
    {"kind": "scan", "n": 8},
    {"kind": "scan", "n": 4, "name": "scan4"},
    {"kind": "scan", "n": 4, "ratio": 0.5, "name": "scan4r"},
    {"kind": "scan", "n": 4, "ratio": 0.5, "suspect": "ungrounded", "name": "scan4g"},
    {"kind": "scan", "n": 4, "ratio": 0.5, "suspect": "ungrounded", "suspected": "abstain", "name": "scan4s"},
    {
        "kind": "scan",
        "n": 4,
        "ratio": 0.5,
        "suspect": "ungrounded",
        "suspected": "abstain",
        "confirm": True,
        "name": "scan4c",
    },
    {"kind": "vouch", "of": ["equations"], "n": 2},
    {"kind": "vouch", "of": ["equations"], "n": 1, "defer_to": ["scan4c"], "name": "vouchc"},
]
SCAN_DEFAULT = {k: v for k, v in SOURCES[-3].items() if k != "name"}  # configs/recipe.yaml's SCAN (confirm)
VOUCH_DEFAULT = {k: v for k, v in SOURCES[-1].items() if k not in ("name", "defer_to")}  # and its vouch
_SCAN4 = ("equations", "scan4")
_SCAN4R = ("equations", "scan4r")
_SCAN4G = ("equations", "scan4g")
_SCAN4S = ("equations", "scan4s")
RECIPES: list[tuple[str, str, tuple[str, ...], FusionParams]] = [
    ("vanilla MC (N=8, every step)", "single", ("mc8",), FusionParams()),
    ("SCAN alone", "single", ("scan",), FusionParams()),
    ("equations + SCAN, earliest", "earliest", ("equations", "scan"), FusionParams()),
    ("equations + SCAN, consensus (1 of 2)", "consensus", ("equations", "scan"), FusionParams(required=1)),
    ("SCAN N=4 alone", "single", ("scan4",), FusionParams()),
    ("equations + SCAN N=4, earliest", "earliest", _SCAN4, FusionParams()),
    ("equations + MC, earliest", "earliest", ("equations", "mc8"), FusionParams()),
    ("equations + SCAN N=4, earliest, clears [scan]", "earliest", _SCAN4, FusionParams(clears=("scan4",))),
    ("SCAN N=4 ratio 0.5 alone", "single", ("scan4r",), FusionParams()),
    ("equations + SCAN N=4 ratio 0.5, earliest", "earliest", _SCAN4R, FusionParams()),
    (
        "equations + SCAN N=4 ratio 0.5, earliest, clears [scan]",
        "earliest",
        _SCAN4R,
        FusionParams(clears=("scan4r",)),
    ),
    (
        "... + vouch [scan]",
        "earliest",
        _SCAN4R,
        FusionParams(clears=("scan4r",), vouch=("scan4r",)),
    ),
    (
        "... SCAN suspect ungrounded (rolled out), clears [scan]",
        "earliest",
        _SCAN4G,
        FusionParams(clears=("scan4g",)),
    ),
    (
        "... SCAN suspect ungrounded (abstain), clears [scan]",
        "earliest",
        _SCAN4S,
        FusionParams(clears=("scan4s",)),
    ),
    (
        "... SCAN suspect ungrounded (abstain), clears + vouch [scan]",
        "earliest",
        _SCAN4S,
        FusionParams(clears=("scan4s",), vouch=("scan4s",)),
    ),
    (
        "... + vouch source, clears [scan], vouch [scan, vouch]",
        "earliest",
        (*_SCAN4S, "vouch"),
        FusionParams(clears=("scan4s",), vouch=("scan4s", "vouch")),
    ),
    (
        "... SCAN confirm, + vouch (defer_to [scan]), clears [scan], vouch [scan, vouch] "
        "(the default recipe)",
        "earliest",
        ("equations", "scan4c", "vouchc"),
        FusionParams(clears=("scan4c",), vouch=("scan4c", "vouchc")),
    ),
]


def _read(root: Path, prefix: str, kind: str) -> list[Any]:
    build = BuildDir(root)
    return [
        r for e in Manifest.read(root).under(prefix) for r in tables.decode(kind, build.read_table(e.entry))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="the build's seed (7: the README's)")
    parser.add_argument(
        "--streams", type=int, default=3, help="the default recipe again on this many other SCAN streams"
    )
    args = parser.parse_args()
    sources, recipes = list(SOURCES), list(RECIPES)
    for k in range(1, args.streams + 1):  # a named source draws its own completions: SCAN's noise
        sources += [
            {**SCAN_DEFAULT, "name": f"scan4s-{k}"},
            {**VOUCH_DEFAULT, "name": f"vouch-{k}", "defer_to": [f"scan4s-{k}"]},
        ]
        recipes.append(
            (f"the default recipe, SCAN and vouch stream {k}", "earliest",
             ("equations", f"scan4s-{k}", f"vouch-{k}"),
             FusionParams(clears=(f"scan4s-{k}",), vouch=(f"scan4s-{k}", f"vouch-{k}")))
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "build"
        config = parse_config(
            {
                "name": "bench-recipe",
                "seed": args.seed,
                "inputs": [
                    {"kind": "arith", "count": 48, "min_steps": 3, "max_steps": 9},
                    {"kind": "gsm8k", "limit": 48},
                ],
                "generate": {"rollouts_per_problem": 4},
                "annotate": sources,
                "fuse": {"rule": "single", "source": "mc8"},
                "runner": {"workers": 0, "shard_size": 16, "cache": False},
            }
        )
        LocalRunner().run(config, root)
        rollouts: list[Rollout] = _read(root, "stages/generate/", "rollout")
        labels: dict[str, dict[str, StepLabels]] = {}
        for source in [str(spec.get("name", spec["kind"])) for spec in sources]:
            labels[source] = {
                lab.rollout_id: lab for lab in _read(root, f"stages/annotate-{source}/", "labels")
            }
    steps = sum(len(r.steps) for r in rollouts)
    tokens = {s: sum(lab.cost.generated_tokens for lab in by.values()) for s, by in labels.items()}
    rows = []
    for title, rule, fused_sources, params in recipes:
        predicted, truth = [], []
        for r in rollouts:
            if r.truth is None:
                continue
            fused = fuse(
                rule,
                [labels[s][r.rollout_id] for s in fused_sources],
                len(r.steps),
                fused_sources[0],
                params=params,
            )
            if fused.first_error is not None:
                predicted.append(fused.first_error)
                truth.append(r.truth.first_error)
        score = processbench_f1(predicted, truth)
        spent = sum(tokens[s] for s in fused_sources)
        rows.append(
            {
                "recipe": title,
                "first_error_f1": round(score.f1, 4),
                "coverage": round(len(predicted) / len(rollouts), 4),
                "erroneous_kept": sum(t >= 0 for t in truth),
                "policy_tokens_per_step": round(spent / steps, 1),
                "tokens_vs_vanilla": round(spent / tokens["mc8"], 4),
            }
        )
    print(
        json.dumps({"seed": args.seed, "rollouts": len(rollouts), "steps": steps, "recipes": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
