"""Search annotators against Monte Carlo on the same rollouts, in one run (issue #10).

One build of `arith` problems with 8-10 step solutions (the simulated policy, 4 rollouts each) labels
every rollout with MC (N=8 on every step), MC with SCAN's early stop, and OmegaPRM (k=8; binary
search only, then with the paper's tree search), side by side. For each source: first-error F1 and
step accuracy against exact truth, policy completions and generated tokens per labelled step; then
the tree-derived labels (`prmforge relabel`) of the searched trees; then OmegaPRM's completions to
locate a wrong rollout's first error against full MC's (the paper's O(k log M) against O(k M)).

Not a test; the numbers go to the README. ``--problems`` sets the problem count (default 48).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from prmforge.pipelines import tables
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stats import quality_of_source, summarize
from prmforge.pipelines.trees import RULES, relabel

SOURCES = [
    {"kind": "mc", "n": 8, "name": "mc8", "last_step_from_outcome": True},
    {"kind": "mc", "n": 8, "name": "mc8-early-stop", "early_stop": True},
    {"kind": "omegaprm", "k": 8, "search_limit": 0, "name": "omegaprm"},
    {"kind": "omegaprm", "k": 8, "search_limit": 100, "name": "omegaprm-search"},
]


def _read(root: Path, prefix: str, kind: str) -> list[Any]:
    build = BuildDir(root)
    return [
        r for e in Manifest.read(root).under(prefix) for r in tables.decode(kind, build.read_table(e.entry))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "build"
        config = parse_config(
            {
                "name": "bench-search",
                "seed": 1,
                "inputs": [{"kind": "arith", "count": args.problems, "min_steps": 8, "max_steps": 10}],
                "generate": {"rollouts_per_problem": 4},
                "annotate": SOURCES,
                "fuse": {"rule": "single", "source": "mc8"},
                "runner": {"workers": 0, "shard_size": 16, "cache": False},
            }
        )
        LocalRunner().run(config, root)
        summary = summarize(root)
        rollouts = _read(root, "stages/generate/", "rollout")
        truth = {r.rollout_id: r.truth for r in rollouts}
        steps = sum(len(r.steps) for r in rollouts)
        rows = []
        for spec in SOURCES:
            name = str(spec["name"])
            q = summary["quality_by_source"][name] or {}
            cost = summary["cost_by_source"][name]
            rows.append(
                {
                    "source": name,
                    "first_error_f1": q.get("first_error_f1"),
                    "step_accuracy": q.get("step_accuracy"),
                    "coverage": q.get("coverage"),
                    "completions_per_step": round(cost["completions"] / steps, 3),
                    "tokens_per_step": round(cost["generated_tokens"] / steps, 1),
                }
            )
        for rule in RULES:
            labels = relabel(root, rule, stage="annotate-omegaprm-search")
            q = quality_of_source(labels, truth) or {}
            rows.append(
                {
                    "source": f"omegaprm-search trees, rule {rule}",
                    "first_error_f1": q.get("first_error_f1"),
                    "step_accuracy": q.get("step_accuracy"),
                    "coverage": q.get("coverage"),
                    "completions_per_step": 0.0,
                    "tokens_per_step": 0.0,
                }
            )
        wrong = [r for r in rollouts if r.outcome is False]
        omega = {lab.rollout_id: lab for lab in _read(root, "stages/annotate-omegaprm/", "labels")}
        mc = {lab.rollout_id: lab for lab in _read(root, "stages/annotate-mc8/", "labels")}
        located = {
            "wrong_rollouts": len(wrong),
            "mean_steps": round(sum(len(r.steps) for r in wrong) / max(len(wrong), 1), 2),
            "omegaprm_estimates_per_wrong_rollout": round(
                sum(len(omega[r.rollout_id].meta.get("search_path", [])) for r in wrong) / max(len(wrong), 1),
                2,
            ),
            "mc_completions": sum(mc[r.rollout_id].cost.completions for r in wrong),
            "omegaprm_completions": sum(omega[r.rollout_id].cost.completions for r in wrong),
        }
        located["ratio"] = round(located["omegaprm_completions"] / max(located["mc_completions"], 1), 3)
    print(
        json.dumps(
            {"rollouts": len(rollouts), "steps": steps, "sources": rows, "first_error": located}, indent=2
        )
    )


if __name__ == "__main__":
    main()
