"""README.md of a Hub export: the YAML header the Hub and ``datasets`` read, then the dataset card.

The card states the label policy, the sources and how each was checked (tool, isolation), the fusion
rule, row and step counts, cost (completions, tokens, tool calls: wall-clock seconds are left out, they
differ between an interrupted and an uninterrupted build of the same content), the outcome grader,
each input's origin, licence and attribution, and, when the built-in simulated policy wrote the
rollouts, that they are synthetic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from prmforge.pipelines.card import _fusion, _grader, _policies, _prof
from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.graph import card_methods
from prmforge.pipelines.quality_card import label_quality, render_quality
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stats import summarize
from prmforge.reporting.hub_layout import SPLITS, HubShard, hub_features, write_hub_folder
from prmforge.reporting.licences import GSM8K_MIT_NOTICE, card_licence, origin_of
from prmforge.schemas.engines import SimulatedPolicyConfig
from prmforge.schemas.errors import BuildStateError

__all__ = ["build_config", "export_hub_folder", "render_hub_card"]

_COLUMNS = (
    ("`prompt`", "string", "the question (TRL stepwise supervision)"),
    ("`completions`", "list of strings", "the solution's steps, without separators"),
    ("`labels`", "list of bools", "the trained label per step: true before the first error"),
    ("`example_id`, `problem_id`", "string", "stable ids of the row and of its problem"),
    ("`scores`", "list of floats", "per-step soft scores of the deciding sources (null: none checked it)"),
    ("`first_error`", "int32", "0-based index of the first erroneous step, -1 for none"),
    ("`votes`", "list of {source, first_error}", "every source's first error (null: it abstained)"),
    ("`agreement`, `weight`", "float64", "share of sources agreeing with the label; the row's weight"),
    ("`gold`, `final_answer`", "string", "the reference answer and the solution's answer"),
    ("`outcome`", "bool", "whether the solution's answer matches the gold"),
    ("`truth_first_error`", "int32", "exact truth where known, for evaluation only: never train on it"),
    ("`truth_step_correct`", "list of bools", "exact per-step truth where known, for evaluation only"),
)


def build_config(root: Path, manifest: Manifest) -> BuildConfig:
    """The configuration ``build.json`` records, checked against the manifest's config hash."""
    data = BuildDir(root).read_build()
    config = BuildConfig.model_validate(data.get("config", {}))
    if config.content_hash() != manifest.config_hash:
        raise BuildStateError(f"{root}: build.json names another configuration than manifest.json")
    return config


def _size_category(rows: int) -> str:
    for bound, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < bound:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"


def _header(config: BuildConfig, shards: Sequence[HubShard], licence: str, synthetic: bool) -> str:
    splits = [s for s in SPLITS if any(sh.split == s for sh in shards)]
    rows = sum(sh.rows for sh in shards)
    tags = ["process-reward-model", "prm", "stepwise-supervision", "trl", "prmforge"]
    meta: dict[str, Any] = {
        "license": licence,
        "language": ["en"],
        "pretty_name": config.name,
        "size_categories": [_size_category(rows)],
        "task_categories": ["token-classification"],
        "tags": [*tags, "synthetic"] if synthetic else tags,
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits],
            }
        ],
        "dataset_info": {
            "features": hub_features(),
            "splits": [
                {
                    "name": s,
                    "num_bytes": sum(sh.num_bytes for sh in shards if sh.split == s),
                    "num_examples": sum(sh.rows for sh in shards if sh.split == s),
                }
                for s in splits
            ],
            "download_size": sum(sh.file_bytes for sh in shards),
            "dataset_size": sum(sh.num_bytes for sh in shards),
        },
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100) + "---\n"


def _cost_table(s: dict[str, Any]) -> str:
    lines = [
        "| source | policy completions | generated tokens | prompt tokens | tool calls |",
        "|---|---|---|---|---|",
    ]
    for source, c in s["cost_by_source"].items():
        lines.append(
            f"| `{source}` | {c['completions']} | {c['generated_tokens']} | {c['prompt_tokens']} | "
            f"{c['tool_calls']} |"
        )
    gen = s["generation"]
    return "\n".join(lines) + (
        f"\n\nGenerating the rollouts: {gen['generated_rollouts']} generated (of {gen['rollouts']}), "
        f"{gen['completion_tokens']} completion tokens."
    )


def render_hub_card(root: Path, repo_id: str, shards: Sequence[HubShard], licence: str | None = None) -> str:
    """The README.md of the Hub export of the build in ``root`` (``licence``: ``--license``)."""
    manifest = Manifest.read(root)
    config = build_config(root, manifest)
    s = summarize(root)
    origins = [origin_of(i, spec) for i, spec in enumerate(config.inputs)]
    licence_id, licence_why = card_licence(origins, licence)
    synthetic = isinstance(config.policy, SimulatedPolicyConfig) and s["generation"]["generated_rollouts"] > 0
    methods = "\n".join(
        f"| `{source}` | {sentence} | {manifest.verification[source]['tool']} | "
        f"{manifest.verification[source]['isolation']} |"
        for source, sentence in card_methods(config)
    )
    counts = "\n".join(
        f"| {sp} | {sum(sh.rows for sh in shards if sh.split == sp)} | "
        f"{sum(1 for sh in shards if sh.split == sp)} |"
        for sp in SPLITS
        if any(sh.split == sp for sh in shards)
    )
    inputs = "\n".join(
        f"| {o.name} | {o.description} | {o.licence or 'not known'} | {o.attribution} |" for o in origins
    )
    synthetic_note = (
        "\n> **Synthetic rollouts.** The solutions were written by prmforge's built-in simulated policy\n"
        "> (templated reasoning with injected, parameterised mistakes), not by a language model. They suit\n"
        "> testing a PRM pipeline and studying label methods against exact truth; they are not model\n"
        "> outputs.\n"
        if synthetic
        else ""
    )
    gsm8k = any(o.licence == "mit" and "GSM8K" in o.attribution for o in origins)
    notice = f"\n### GSM8K licence\n\n```\n{GSM8K_MIT_NOTICE}\n```\n" if gsm8k else ""
    dedup = s["dedup"]
    share = "-" if s["positive_share"] is None else f"{s['positive_share']:.4f}"
    quality = render_quality(label_quality(BuildDir(root), manifest))
    columns = "\n".join(f"| {name} | {kind} | {meaning} |" for name, kind, meaning in _COLUMNS)
    return f"""{_header(config, shards, licence_id, synthetic)}
# {config.name}

Process-reward-model training data built by prmforge and exported to
`{repo_id}`: every row is a question, a solution split into steps, and one label per step.
{synthetic_note}
- Content hash `{manifest.content_hash}`, config hash `{manifest.config_hash}`.
- Load it with `datasets.load_dataset("{repo_id}")`; the columns `prompt`, `completions`, `labels`
  are TRL's stepwise-supervision format.

## Counts

| split | rows | files |
|---|---|---|
{counts}

{s["steps"]} labelled steps, positive share {share}; {s["rollouts_correct"]} rows reach the gold
answer. Dedup: {dedup.get("repeated_rows", 0)} exact repeats of (prompt, completions),
{dedup.get("dropped", 0)} dropped; {s["quarantined"]} input rows quarantined, {s["excluded"]} left out
(undecided label).

## Label policy

- Trained label: {_fusion(config)}{_prof(config)}.
- `labels` are hard: a step is positive iff it comes before the first error; steps after the first
  error are **{config.labels.after_first_error}**.
- Policy: {_policies(config)}.
- Outcome grading (final answers against the gold): {_grader()}.

## Label sources

| source | method | tool | isolation |
|---|---|---|---|
{methods}

{quality}
## Cost

{_cost_table(s)}

## Columns

| column | type | meaning |
|---|---|---|
{columns}

## Source data and licence

Licence: {licence_why}

| input | what | licence | attribution |
|---|---|---|---|
{inputs}
{notice}"""


_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def export_hub_folder(root: Path, repo_id: str, output: Path, licence: str | None = None) -> list[HubShard]:
    """Write the Hub layout of the build in ``root`` into ``output`` (atomically); returns its shards."""
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", "-", ".")):
        raise BuildStateError(f"--repo-id: {repo_id!r} is not ORG/NAME (letters, digits, '-', '_', '.')")
    return write_hub_folder(root, output, lambda shards: render_hub_card(root, repo_id, shards, licence))
