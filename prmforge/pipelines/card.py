"""The dataset card (README.md) written into every build directory."""

from __future__ import annotations

from typing import Any

from prmforge.schemas.config import BuildConfig


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _policies(config: BuildConfig) -> str:
    kinds = {s.kind for s in config.suites}
    names = []
    if kinds & {"arith", "gsm8k"}:
        names.append(f"simulated (temperature {config.policy.sampling.temperature}) for the math suites")
    if kinds & {"logic", "code"}:
        knobs = config.policy.scripted
        names.append(
            f"scripted (logic error rate {knobs.logic_error_rate}, code bug rate {knobs.code_bug_rate})"
        )
    return "; ".join(names)


def _method(config: BuildConfig) -> str:
    mc = config.annotate.mc
    method = config.annotate.method
    if method == "mc":
        return (
            f"Monte Carlo estimation (Math-Shepherd), N={mc.n} completions per step, early stop "
            f"{_on(mc.early_stop)}, last step from outcome {_on(mc.last_step_from_outcome)}."
        )
    return {
        "equations": "exact check of the equalities each step states (abstains when nothing is checkable).",
        "z3": "Z3 local entailment of each inference from its cited premises (FoVer).",
        "compile-test": "compile and run each line's program against unit tests in the sandbox (PRLCoder).",
        "lanser": "language-server process reward (Lanser-CLI, weights 0.5/0.4/0.1).",
    }[method]


def render_card(config: BuildConfig, manifest: dict[str, Any]) -> str:
    splits = [s for s, info in manifest["splits"].items() if info["rows"] > 0 or s == "train"]
    data_files = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    stages = "\n".join(
        f"| {name} | {t['rows_in']} | {t['accepted']} | {t['quarantined']} | {t['rows_out']} |"
        for name, t in manifest["stages"].items()
    )
    suites = ", ".join(s.kind for s in config.suites)
    verification = manifest["verification"]
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

- Content hash: `{manifest["content_hash"]}` (config hash `{manifest["config_hash"][:16]}`)
- Suites: {suites}; policy: {_policies(config)}
- Step labels: {_method(config)}
  `labels` are hard: a step is positive iff it comes before the first error;
  `scores` keep the per-step values (soft estimates, or 1/0 from a tool; null where it could not check).
- Steps after the first error: **{config.labels.after_first_error}**.
- Columns `prompt`, `completions`, `labels` are TRL's stepwise-supervision triple.
- Columns `truth_first_error` and `truth_step_correct` are exact truth from the built-in suites,
  for evaluation only: never train on them.
- Verification: {verification["tool"]}; isolation: **{verification["isolation"]}**.

## Rows per stage

| stage | in | accepted | quarantined | out |
|---|---|---|---|---|
{stages}

Quarantined rows, with the field and reason, are under `quarantine/`.
"""
