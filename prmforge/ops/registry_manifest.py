"""The registry against the truth: a build's row compared with the manifest in its directory.

Compared: the content hash, the shard count and, per stage, the rows in, rows out and quarantined. Only
a build that ended with a manifest (``succeeded``, or ``failed`` by a gate after writing it) is compared;
an active or interrupted build's directory holds a previous run's manifest, if any, and is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prmforge.ops.registry_schema import BuildInfo, StageInfo
from prmforge.pipelines.runners.builddir import GLOBAL, StageCounts
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.errors import BuildStateError

__all__ = ["ManifestCheck", "check_manifest", "stages_from_manifest"]


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    """``compared`` is False when there was nothing to compare (and ``note`` says why)."""

    compared: bool
    differences: tuple[str, ...] = ()
    note: str = ""

    @property
    def agrees(self) -> bool:
        return self.compared and not self.differences


def stages_from_manifest(
    manifest: Manifest, seen: dict[str, StageInfo], global_stages: set[str]
) -> list[StageInfo]:
    """The stage rows of a finished build: counts from the manifest (every shard, resumed or not), the
    seconds and resumed shards this run saw (``seen``); a global stage (one that ``global_stages`` names,
    or whose files the manifest lists under the global shard) ran once over all shards."""
    global_stages = global_stages | {f.stage for f in manifest.files if f.shard == GLOBAL}
    out = []
    for name, counts in manifest.stages.items():
        run = seen.get(name, StageInfo(name))
        shards = 1 if name in global_stages else manifest.num_shards
        out.append(
            StageInfo(
                name, shards, min(run.resumed, shards), counts.rows_in, counts.rows_out,
                counts.quarantined, run.seconds,
            )
        )  # fmt: skip
    return out


def check_manifest(build: BuildInfo) -> ManifestCheck:
    if build.content_hash is None or build.output is None:
        return ManifestCheck(False, note=f"not compared with a manifest (the build is {build.status})")
    try:
        manifest = Manifest.read(Path(build.output))
    except BuildStateError as err:
        return ManifestCheck(True, (f"the manifest cannot be read: {err}",))
    return ManifestCheck(True, tuple(differences(build, manifest)))


def differences(build: BuildInfo, manifest: Manifest) -> list[str]:
    out = []
    if manifest.content_hash != build.content_hash:
        mine = (build.content_hash or "-")[:16]
        out.append(f"content hash: registry {mine}, manifest {manifest.content_hash[:16]}")
    if build.num_shards is not None and manifest.num_shards != build.num_shards:
        out.append(f"shards: registry {build.num_shards}, manifest {manifest.num_shards}")
    recorded = {s.name: s for s in build.stages}
    for name in sorted(set(recorded) - set(manifest.stages)):
        out.append(f"stage {name}: in the registry, not in the manifest")
    for name, counts in manifest.stages.items():
        stage = recorded.get(name)
        if stage is None:
            out.append(f"stage {name}: in the manifest, not in the registry")
            continue
        out.extend(_stage_differences(stage, counts))
    return out


def _stage_differences(stage: StageInfo, counts: StageCounts) -> list[str]:
    pairs = (
        ("rows in", stage.rows_in, counts.rows_in),
        ("rows out", stage.rows_out, counts.rows_out),
        ("quarantined", stage.quarantined, counts.quarantined),
    )
    return [f"stage {stage.name} {what}: registry {mine}, manifest {theirs}" for what, mine, theirs in pairs
            if mine != theirs]  # fmt: skip
