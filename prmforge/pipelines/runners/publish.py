"""Finishing a build: the global stages, the manifest, the dataset card, and the gates that make a
finished build exit non-zero."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict

from prmforge.pipelines import tables
from prmforge.pipelines.card import render_card
from prmforge.pipelines.graph import provenance
from prmforge.pipelines.quality_card import label_quality, render_quality
from prmforge.pipelines.runners.builddir import (
    GLOBAL,
    Marker,
    StageCounts,
    atomic_write_bytes,
    atomic_write_json,
)
from prmforge.pipelines.runners.finalize import DEDUP, SPLITS, WRITE, Finalizer, Settings
from prmforge.pipelines.runners.manifest import Manifest, ManifestFile
from prmforge.pipelines.runners.plan import BuildPlan, BuildResult
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import BuildStateError


def write_manifest(plan: BuildPlan, dedup: Marker, write: Marker) -> Manifest:
    """List every committed file; the content hash covers the data files in order."""
    build, graph = plan.build, plan.graph
    stages: dict[str, StageCounts] = {}
    files: list[ManifestFile] = []
    for stage in graph.stages:
        total = StageCounts(0, 0, 0, 0)
        for spec in plan.shards:
            marker = build.committed(stage.name, spec.index, graph.hashes[stage.name])
            if marker is None:
                raise BuildStateError(f"{build.root}: stage {stage.name} shard {spec.index} is not committed")
            total = total + marker.counts
            files.extend(ManifestFile(stage.name, spec.index, **asdict(f)) for f in marker.files)
        stages[stage.name] = total
    for name, marker in ((DEDUP, dedup), (WRITE, write)):
        stages[name] = marker.counts
        files.extend(ManifestFile(name, GLOBAL, **asdict(f)) for f in marker.files)
    data = [f for f in files if f.path.startswith("data/")]
    digest = hashlib.sha256()
    for f in data:
        digest.update(f"{f.path}:{f.content_hash}\n".encode())
    manifest = Manifest(
        name=plan.config.name,
        config_hash=plan.config.content_hash(),
        num_shards=len(plan.shards),
        content_hash=digest.hexdigest(),
        splits={s: sum(f.rows for f in data if f.path.startswith(f"data/{s}-")) for s in SPLITS},
        stages=stages,
        sources=tuple(a.source for a in plan.config.annotate),
        verification=provenance(plan.config),
        files=tuple(files),
        dedup=dict(dedup.summary),
    )
    data_json = manifest.to_json()
    atomic_write_json(build.manifest_file, data_json)
    atomic_write_bytes(
        build.root / "README.md",
        render_card(
            plan.config,
            manifest,
            excluded_reasons(plan, manifest),
            render_quality(label_quality(build, manifest)),
        ).encode(),
    )
    return manifest


def _reasons(plan: BuildPlan, manifest: Manifest, prefix: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for f in manifest.under(prefix):
        for q in tables.decode("quarantine", plan.build.read_table(f.entry)):
            counts[q.summary()] += 1
    return counts


def excluded_reasons(plan: BuildPlan, manifest: Manifest) -> dict[str, int]:
    return dict(_reasons(plan, manifest, "excluded/").most_common(10))


def gate(plan: BuildPlan, manifest: Manifest) -> list[str]:
    """Why this build must exit non-zero: no training rows, or a stage that quarantined too much."""
    problems = []
    share = plan.config.limits.max_quarantine_share
    reasons = _reasons(plan, manifest, "quarantine/")
    for name, t in manifest.stages.items():
        if t.rows_in and t.quarantined / t.rows_in > share:
            top = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3) if r.startswith(f"{name}:"))
            problems.append(
                f"stage {name} quarantined {t.quarantined} of {t.rows_in} rows "
                f"(more than limits.max_quarantine_share = {share}): {top}"
            )
    clashes = manifest.dedup.get("clashing_ids", 0)
    if clashes:
        problems.append(
            f"{clashes} row(s) share a problem id with rows of another shard (two input rows with one id); "
            "the later copies were dropped: give every input row a distinct id (see excluded rows of dedup)"
        )
    if (
        manifest.splits.get("train", 0)
        + manifest.splits.get("validation", 0)
        + manifest.splits.get("test", 0)
        == 0
    ):
        excluded = excluded_reasons(plan, manifest)
        top = "; ".join(f"{n} x {r}" for r, n in list(excluded.items())[:3]) or "no rows reached assemble"
        top_q = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
        problems.append(
            f"the build has 0 training rows: {top}" + (f"; quarantined: {top_q}" if top_q else "")
        )
    return problems


def finish(plan: BuildPlan, run_id: str, shards_run: int) -> BuildResult:
    """The global stages, the manifest and the card; and what makes the build fail, if anything."""
    cfg = plan.config
    finalizer = Finalizer(
        plan.graph,
        plan.build,
        len(plan.shards),
        cfg.split.dedup,
        cfg.split.rows_per_file,
        run_id,
        settings=Settings.of(cfg.split, cfg.seed),
    )
    dedup, write, resumed = finalizer.run()
    for marker, was_committed in zip((dedup, write), resumed, strict=True):
        plan.emit(StageEvent(GLOBAL, marker.stage, marker.counts, was_committed, 0.0))
    manifest = write_manifest(plan, dedup, write)
    return BuildResult(
        root=plan.build.root,
        content_hash=manifest.content_hash,
        resumed=plan.resumed,
        shards_run=shards_run,
        shards_skipped=len(plan.shards) - shards_run,
        manifest=manifest,
        grown=plan.grown,
        reconfigured=plan.reconfigured,
        problems=tuple(gate(plan, manifest)),
        warnings=plan.warnings,
    )
