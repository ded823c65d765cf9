#!/usr/bin/env python3
"""Recompute and print every seed-dependent number pinned in the tests, grouped by test file and test.

Every generated problem, rollout and label derives from :mod:`prmforge.schemas.seeds`, so a change to
a seed (its encoding, a site's label or parts) moves these pins. After such a change, run

    .venv/bin/python scripts/pinned_numbers.py              # every group
    .venv/bin/python scripts/pinned_numbers.py test_e2e     # the groups whose file or test matches

check that each new value still shows what its test is about (each group's note says what that is),
and copy the values into the tests. Each group runs the same code as its test, through the test
modules' own helpers where they have them; the builds take about a minute in all.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "pipelines")]  # the pipeline tests import `conftest`

from prmforge.annotators.mc import step_seed  # noqa: E402
from prmforge.pipelines.runners.local import LocalRunner  # noqa: E402
from prmforge.pipelines.runners.manifest import Manifest  # noqa: E402
from prmforge.pipelines.stages.assemble import normalised_question  # noqa: E402
from prmforge.pipelines.stats import summarize  # noqa: E402
from prmforge.policies.base import GenerationRequest  # noqa: E402
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams  # noqa: E402
from prmforge.schemas.records import SamplingParams  # noqa: E402
from prmforge.schemas.seeds import derive_seed, rng, short_hash, unit  # noqa: E402
from prmforge.suites.arith import generate_arith_problems  # noqa: E402
from prmforge.suites.plan import parse_answer_line  # noqa: E402

Pins = dict[str, object]
GROUPS: list[tuple[str, str, str, Callable[[], Pins]]] = []


def group(path: str, test: str, note: str) -> Callable[[Callable[[], Pins]], Callable[[], Pins]]:
    def register(fn: Callable[[], Pins]) -> Callable[[], Pins]:
        GROUPS.append((path, test, note, fn))
        return fn

    return register


def load(path: str) -> ModuleType:
    """A test module, imported from its file (as pytest does, by its base name)."""
    name = Path(path).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build(config: Any) -> Path:
    """Build ``config`` into a fresh temporary directory (kept until the process exits)."""
    root = Path(tempfile.mkdtemp(prefix="pins-")) / "b"
    LocalRunner().run(config, root)
    return root


# ------------------------------------------------------------------------------ the seed helper


@group("tests/schemas/test_seeds.py", "test_pinned_values", "fixed values of the one encoding")
def _seeds() -> Pins:
    return {
        'derive_seed("generate", 7, "arith-0")': derive_seed("generate", 7, "arith-0"),
        'derive_seed(7, "generate", "arith-0")': derive_seed(7, "generate", "arith-0"),
        'derive_seed("mc-step", 0, "r1", 0)': derive_seed("mc-step", 0, "r1", 0),
        'derive_seed("mc-step", 0, "r1", 0, bits=31)': derive_seed("mc-step", 0, "r1", 0, bits=31),
        'unit("simulated-trap", 0, "arith-0-0")': unit("simulated-trap", 0, "arith-0-0"),
        'rng("arith", 0, 0).random()': rng("arith", 0, 0).random(),
        'short_hash("a", 1)': short_hash("a", 1),
    }


@group("tests/annotators/test_mc.py", "test_step_seed_is_stable_and_in_range", "31-bit MC request seeds")
def _step_seed() -> Pins:
    return {f"step_seed{args}": step_seed(*args) for args in ((0, "r1", 0), (1, "r1", 0), (0, "r1", 1))}


# ------------------------------------------------------------------------------ the simulated policy

SIMULATED = "tests/policies/test_simulated.py"


@group(
    SIMULATED,
    "test_temperature_zero_reproduces_the_reference_from_every_correct_prefix",
    "problems without a trap among 12 (trap_share 0.1); greedy decoding is checked on each",
)
def _plain() -> Pins:
    policy = SimulatedPolicy()
    problems = generate_arith_problems(12, seed=6, min_steps=3, max_steps=9)
    return {"len(plain)": sum(policy.trap_calc(p) is None for p in problems)}


@group(
    SIMULATED,
    "test_self_correction_recovers_the_right_answer_at_a_measurable_rate",
    "right answers of 400 after a wrong first step, self_correct_prob 0.3: about 120",
)
def _self_correction() -> Pins:
    t = load(SIMULATED)
    params = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=0.3, trap_share=0.0)
    result = t._ask(SimulatedPolicy(params, seed=5), t.TOY, t.SLIPPED_FIRST, n=400, seed=1)
    return {"len(right)": sum(parse_answer_line(c.text) == "77" for c in result.completions)}


@group(
    SIMULATED,
    "test_mistakes_scale_with_temperature",
    "wrong rollouts of 320 at temperatures 0, 0.3, 0.7, 1.0: 0 at 0, then increasing",
)
def _temperatures() -> Pins:
    t = load(SIMULATED)
    problems = generate_arith_problems(40, seed=8, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(t.NO_TRAP, seed=2)
    return {"counts": [t._wrong_rollouts(problems, policy, temp) for temp in (0.0, 0.3, 0.7, 1.0)]}


@group(SIMULATED, "test_default_parameters_solve_about_sixty_percent", "right of 800, within 400..560")
def _sixty_percent() -> Pins:
    t = load(SIMULATED)
    problems = generate_arith_problems(100, seed=3, min_steps=3, max_steps=6)
    requests = [GenerationRequest(p, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)]
    results = SimulatedPolicy().generate(requests)
    return {"right": sum(t._answers(r).count(p.gold) for p, r in zip(problems, results, strict=True))}


@group(
    SIMULATED,
    "test_trap_problems_are_rarely_solved_and_self_correction_cannot_fix_them",
    "solved of 240 with a trap in every problem: about 5% (trap_error_prob 0.95)",
)
def _traps() -> Pins:
    t = load(SIMULATED)
    problems = generate_arith_problems(30, seed=12, min_steps=3, max_steps=6)
    eager = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=1.0, trap_share=1.0)
    requests = [GenerationRequest(p, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)]
    results = SimulatedPolicy(eager, seed=1).generate(requests)
    return {"solved": sum(t._answers(r).count(p.gold) for p, r in zip(problems, results, strict=True))}


@group(
    "tests/policies/test_simulated_pinned.py",
    "test_outputs_match_the_pinned_digest",
    "digest of the whole workload: guards future optimisations (they must not move it)",
)
def _digest() -> Pins:
    t = load("tests/policies/test_simulated_pinned.py")
    digest, count = t.run_workload(t._generate)
    return {"PINNED_DIGEST": digest, "PINNED_COMPLETIONS": count}


# ------------------------------------------------------------------------------ MC against truth

MC_TRUTH = "tests/integration/test_mc_vs_truth.py"


@group(
    MC_TRUTH,
    "test_self_correction_gives_false_positives_after_the_true_first_error",
    "fp at / after the first error: many with self-correction 0.3, almost none without",
)
def _fp() -> Pins:
    t = load(MC_TRUTH)
    on = t.label(8, self_correct_prob=0.3, trap_share=0.0).confusion
    off = t.label(8, self_correct_prob=0.0, trap_share=0.0).confusion
    return {
        "with_correction (fp_at, fp_after)": (on.fp_at_first_error, on.fp_after_first_error),
        "without (fp_at, fp_after)": (off.fp_at_first_error, off.fp_after_first_error),
    }


@group(
    MC_TRUTH,
    "test_unsolvable_problems_give_false_negatives_before_the_true_first_error",
    "fn (all before the first error) with trap_share 0.5; 0 without traps",
)
def _fn() -> Pins:
    t = load(MC_TRUTH)
    traps = t.label(8, self_correct_prob=0.0, trap_share=0.5).confusion
    policy = SimulatedPolicy(SimulatedPolicyParams(self_correct_prob=0.0, trap_share=0.5), seed=1)
    problems = generate_arith_problems(30, seed=5, min_steps=3, max_steps=6)
    return {
        "traps fn (= fn_before_first_error)": (traps.fn, traps.fn_before_first_error),
        "no_traps fn": t.label(8, self_correct_prob=0.0, trap_share=0.0).confusion.fn,
        "(trap problems of 30)": sum(policy.trap_calc(p) is not None for p in problems),
    }


@group(MC_TRUTH, "test_larger_n_lowers_the_false_negative_rate", "fn rate by N: decreasing, 0 at N=16")
def _rates() -> Pins:
    t = load(MC_TRUTH)
    return {f"rates[{n}]": round(t.label(n).fn_rate, 4) for n in (2, 4, 16)}


# ------------------------------------------------------------------------------ builds


@group(
    "tests/pipelines/test_build.py",
    "test_summary_scores_labels_against_truth",
    "small_config(): steps, positive steps and MC label quality against exact truth",
)
def _summary() -> Pins:
    s = summarize(build(load("tests/pipelines/conftest.py").small_config()))
    return {'(s["steps"], s["positive_steps"])': (s["steps"], s["positive_steps"]), "quality": s["quality"]}


@group(
    "tests/pipelines/test_graph_builds.py",
    "test_earliest_fusion_of_mc_and_equations",
    "equations tool calls = labelled steps of small_config()",
)
def _fusion() -> Pins:
    t = load("tests/pipelines/test_graph_builds.py")
    root = build(t.small_config(annotate=t.MC_EQ, fuse={"rule": "earliest"}))
    return {'s["steps"]': summarize(root)["steps"]}


E2E = "tests/pipelines/test_e2e.py"


def _arith_root(name: str, count: int, shard_size: int, **split: Any) -> Path:
    root: Path = load(E2E)._arith_build(
        Path(tempfile.mkdtemp(prefix="pins-")), name, count, shard_size, **split
    )
    return root


@group(
    E2E,
    "test_many_shards_and_a_small_validation_share_load_with_datasets",
    "arith 320, validation 0.1 in 20 shards: some shards must hold no validation row",
)
def _many() -> Pins:
    root = _arith_root("many", 320, 16, validation=0.1)
    return {"manifest.splits": Manifest.read(root).splits}


@group(
    E2E,
    "test_a_validation_share_that_gives_no_rows_writes_no_validation_file",
    "arith 8, validation 0.001: every problem's split draw must be above the share",
)
def _tiny() -> Pins:
    draws = [unit(0, "split", normalised_question(p.question)) for p in generate_arith_problems(8, seed=0)]
    root = _arith_root("tiny", 8, 4, validation=0.001)
    return {"manifest.splits": Manifest.read(root).splits, "(lowest split draw)": round(min(draws), 4)}


@group(
    E2E,
    "test_rows_per_file_splits_a_split_into_even_files_in_shard_order",
    "arith 64, validation 0.1, test 0.1, 20 rows per file",
)
def _files() -> Pins:
    manifest = Manifest.read(_arith_root("files", 64, 16, validation=0.1, test=0.1, rows_per_file=20))
    files = [f.rows for f in manifest.under("data/train-")]
    return {"manifest.splits": manifest.splits, "train rows per file": files}


@group(
    E2E,
    "test_dedup_drops_exactly_the_repeats_and_reports_them",
    "(rows, repeated, conflicting): conflicting must be > 0, so differing labels are exercised",
)
def _dedup() -> Pins:
    t = load(E2E)
    config = t.dedup_config(True)
    examples = load("tests/pipelines/conftest.py").committed(build(config), "stages/assemble/", "example")
    repeated, conflicting, _ = t._repeats(examples)
    return {
        f"(len(assembled), repeated, conflicting), seed {config.seed}": (len(examples), repeated, conflicting)
    }


def main(argv: list[str]) -> int:
    chosen = [g for g in GROUPS if not argv or any(a in g[0] or a in g[1] for a in argv)]
    if not chosen:
        print(f"no group matches {argv}", file=sys.stderr)
        return 1
    current = ""
    for path, test, note, fn in chosen:
        if path != current:
            print(f"\n{path}")
            current = path
        print(f"  {test}  ({note})")
        for name, value in fn().items():
            print(f"    {name} = {value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
