"""The dataset card (README.md) written into every build directory."""

from __future__ import annotations

from typing import Any

from prmforge.pipelines.balance import BalanceReport
from prmforge.pipelines.config import BuildConfig, input_domains
from prmforge.pipelines.graph import card_methods
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.engines import OpenAIEngineConfig, SimulatedPolicyConfig


def _policies(config: BuildConfig) -> str:
    domains = frozenset().union(*(input_domains(s) for s in config.inputs))
    kinds = {s.kind for s in config.inputs}
    names = []
    policy = config.policy
    if not isinstance(policy, SimulatedPolicyConfig):
        sampling = policy.sampling
        where = f" at {policy.base_url}" if isinstance(policy, OpenAIEngineConfig) else ""
        revision = getattr(policy, "revision", None)
        names.append(
            f"{policy.kind} engine, model `{policy.model}`{'@' + revision if revision else ''}{where} "
            f"(temperature {sampling.temperature}, top_p {sampling.top_p}, max_tokens {sampling.max_tokens}, "
            f"chat {policy.prompt.chat}, stop {list(policy.prompt.stop)})"
        )
        if "rollouts" in kinds:
            names.append("imported rollouts, labelled as given")
        return "; ".join(names)
    if "math" in domains:
        names.append(f"simulated (temperature {policy.sampling.temperature}) for math problems")
    if domains & {"logic", "code"}:
        knobs = policy.scripted
        names.append(
            f"scripted (logic error rate {knobs.logic_error_rate}, code bug rate {knobs.code_bug_rate})"
        )
    if "rollouts" in kinds:
        names.append("imported rollouts, labelled as given")
    return "; ".join(names)


def _fusion(config: BuildConfig) -> str:
    rule = config.fuse.rule
    if rule == "single":
        return f"`single`: the labels of `{config.fused_source}`"
    fuse = config.fuse
    if rule == "earliest":
        text = "`earliest`: the earliest first error any source claims"
        if fuse.clears:
            clears = ", ".join(f"`{s}`" for s in fuse.clears)
            text += f"; a rollout none flags is kept as correct only when {clears} decided it so"
        if fuse.vouch:
            vouch = ", ".join(f"`{s}`" for s in fuse.vouch)
            text += f"; an error after step 0 is kept only when {vouch} decided the rollout"
        return text
    if rule == "consensus":
        among = ", ".join(f"`{s}`" for s in (fuse.among or [a.source for a in config.annotate]))
        need = f"{fuse.required} of them" if fuse.required else "all of them"
        return (
            f"`consensus` of {among}: a rollout is kept only when {need} decided and agree on its first error"
        )
    if rule == "weighted":
        weights = ", ".join(f"`{s}` {p}" for s, p in sorted(fuse.reliability.items()))
        default = f", others {fuse.default_reliability}" if fuse.default_reliability is not None else ""
        return (
            f"`weighted`: a per-step vote weighted by log(p/(1-p)) of each source's reliability p "
            f"({weights}{default}; a tie counts as an error)"
        )
    if rule == "grounded":
        rest = f", else `{fuse.mc}`'s hard label" if fuse.mc else ""
        return (
            f"`grounded` (GroundedPRM): `{fuse.tool}`'s verdicts decide their steps{rest}, else the outcome"
        )
    return "`majority`: a per-step vote of the sources that did not abstain (a tie counts as an error)"


def _scores(config: BuildConfig) -> str:
    if config.fuse.scores == "min_form":
        return (
            "`scores` are min-form (`fuse.scores`): each step's is the least of the per-step values from "
            "it on, so step 0 holds the rollout's min"
        )
    return "`scores` keep the per-step values"


def _prof(config: BuildConfig) -> str:
    prof = config.fuse.prof
    if prof is None:
        return ""
    balanced = ", as many correct as incorrect per question" if prof.balance else ""
    return (
        f"; PROF filter: a rollout whose {prof.aggregate} fused score disagrees with its outcome "
        f"(threshold {prof.threshold}) is left out{balanced}"
    )


def _grader() -> str:
    from prmforge.verifiers.answer import AnswerGrader

    p = AnswerGrader().provenance
    return f"exact numbers, else math-verify {p['math_verify_version']} (extraction {p['extraction']})"


def _near_dedup(config: BuildConfig, dedup: dict[str, int]) -> str:
    near = config.split.near_dedup
    if near is None or "near_duplicates" not in dedup:
        return "Near duplicates: kept (`split.near_dedup` off)."
    from importlib.metadata import version

    return (
        f"Near duplicates (`split.near_dedup`): {dedup['near_duplicates']} rows dropped whose estimated "
        f"Jaccard\n  with an earlier kept row of the same problem is at least {near.threshold} (MinHash of "
        f"word\n  {near.shingle}-shingles of the completions, {near.num_perm} permutations, datasketch "
        f"{version('datasketch')})."
    )


def _balance(dedup: dict[str, int]) -> str:
    report = BalanceReport.from_summary(dedup)
    if report is None:
        return "Positive/negative balance: as labelled (`split.balance` off)."
    what = "rollouts" if report.unit == "rollout" else "step labels"

    def shown(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    splits = "".join(
        f"\n  - {s.split}: {shown(s.share)} ({s.positive} positive / {s.negative} negative {what}), from "
        f"{shown(s.share_before)} ({s.positive_before} / {s.negative_before}); {s.dropped} rows dropped."
        for s in report.splits
    )
    return (
        f"Positive/negative balance (`split.balance`, {report.unit} level): target positive share "
        f"{report.target};\n  rows of the majority class dropped in the order of a seeded hash of "
        f"`example_id` (a row never\n  changes split).{splits}"
    )


def render_card(config: BuildConfig, manifest: Manifest, excluded: dict[str, int], quality: str = "") -> str:
    splits = [s for s, rows in manifest.splits.items() if rows > 0]
    data_files = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    stages = "\n".join(
        f"| {name} | {t.rows_in} | {t.accepted} | {t.quarantined} | {t.excluded} | {t.rows_out} |"
        for name, t in manifest.stages.items()
    )
    methods = "\n".join(
        f"| `{source}` | {sentence} | {manifest.verification[source]['tool']} | "
        f"{manifest.verification[source]['isolation']} |"
        for source, sentence in card_methods(config)
    )
    left_out = "\n".join(f"- {count} x {reason}" for reason, count in excluded.items()) or "- none"
    dedup: dict[str, Any] = manifest.dedup
    inputs = ", ".join(s.kind for s in config.inputs)
    return f"""---
configs:
- config_name: default
  data_files:
{data_files}
tags:
- process-reward-model
- prmforge
---

# {config.name}

Process-reward-model training data built by prmforge.

- Content hash: `{manifest.content_hash}` (config hash `{manifest.config_hash[:16]}`)
- Inputs: {inputs}; policy: {_policies(config)}
- Trained label: {_fusion(config)}{_prof(config)}. `labels` are hard: a step is positive iff it
  comes before the first error; {_scores(config)} (soft estimates, or 1/0 from a
  tool; null where no source could check); `votes` hold every source's first error (null: it
  abstained).
- Outcome grading (final answers against the gold): {_grader()}.
- Steps after the first error: **{config.labels.after_first_error}**.
- Columns `prompt`, `completions`, `labels` are TRL's stepwise-supervision triple.
- Columns `truth_first_error` and `truth_step_correct` are exact truth from the built-in suites (or
  human labels of imported rollouts), for evaluation only: never train on them.
- Splits by normalised question: a question never lands in two splits.
- Exact duplicates of (prompt, completions): {dedup.get("repeated_rows", 0)} rows repeat an earlier
  row ({dedup.get("conflicting_labels", 0)} with different labels); {dedup.get("dropped", 0)} dropped
  (`split.dedup` {"on" if config.split.dedup else "off"}). Questions under several problem ids:
  {dedup.get("duplicate_questions", 0)}.
- {_near_dedup(config, dedup)}
- {_balance(dedup)}

## Label sources

| source | method | tool | isolation |
|---|---|---|---|
{methods}

{quality}
## Left out of the training data

{left_out}

## Rows per stage

| stage | in | accepted | quarantined | excluded | out |
|---|---|---|---|---|---|
{stages}

Quarantined rows, with the field and reason, are under `quarantine/`; rows left out by decision under
`excluded/`.
"""
