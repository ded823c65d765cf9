"""The dataset card (README.md) written into every build directory."""

from __future__ import annotations

from typing import Any

from prmforge.schemas.config import BuildConfig


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def render_card(config: BuildConfig, manifest: dict[str, Any]) -> str:
    splits = [s for s, info in manifest["splits"].items() if info["rows"] > 0 or s == "train"]
    data_files = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    mc = config.annotate.mc
    stages = "\n".join(
        f"| {name} | {t['rows_in']} | {t['accepted']} | {t['quarantined']} | {t['rows_out']} |"
        for name, t in manifest["stages"].items()
    )
    suites = ", ".join(s.kind for s in config.suites)
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
- Suites: {suites}; policy: {config.policy.kind} (temperature {config.policy.sampling.temperature})
- Step labels: Monte Carlo estimation (Math-Shepherd), N={mc.n} completions per step,
  early stop {_on(mc.early_stop)}, last step from outcome {_on(mc.last_step_from_outcome)}.
  `labels` are hard: a step is positive iff it comes before the first step whose estimate is 0;
  `scores` keep the soft estimates.
- Steps after the first error: **{config.labels.after_first_error}**.
- Columns `prompt`, `completions`, `labels` are TRL's stepwise-supervision triple.
- Columns `truth_first_error` and `truth_step_correct` are exact truth from the built-in suites,
  for evaluation only: never train on them.
- Tool verification: none in this build (no sandboxed execution ran).

## Rows per stage

| stage | in | accepted | quarantined | out |
|---|---|---|---|---|
{stages}

Quarantined rows, with the field and reason, are under `quarantine/`.
"""
