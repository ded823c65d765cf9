"""The one place that reads the configuration to decide which stages exist, and how they connect.

:func:`compose` returns the shard-local stages in order, each with the hash of
its own configuration and of everything upstream (a marker of another hash is
never trusted, so adding a source recomputes only it and what depends on it),
and the global stages. :func:`check` verifies that every input of every stage
is written by an earlier stage with the declared record kind: a mis-wired graph
fails when it is composed, not after an hour of labelling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prmforge.pipelines.config import BuildConfig, digest
from prmforge.pipelines.fusion import FusionParams
from prmforge.pipelines.stage import Stage
from prmforge.pipelines.stages import AnnotateStage, AssembleStage, FuseStage, GenerateStage, LoadStage
from prmforge.pipelines.stages.annotate import stage_name
from prmforge.pipelines.stages.load import Parser

SOURCE = "source"  # the runner's own input: a shard's raw rows


class GraphError(ValueError):
    """A graph whose stages do not connect."""


@dataclass(frozen=True, slots=True)
class Graph:
    stages: tuple[Stage, ...]
    hashes: Mapping[str, str]
    global_hash: str
    label_stages: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def downstream(self, names: set[str]) -> set[str]:
        """``names`` and every stage that reads, directly or not, from one of them."""
        out = set(names)
        for s in self.stages:
            if any(i in out for i in s.inputs):
                out.add(s.name)
        return out


def check(stages: Sequence[Stage]) -> None:
    """Every input is written earlier with the kind the stage reads; stage names are unique."""
    writes: dict[str, str] = {SOURCE: "source"}
    for s in stages:
        if s.name in writes:
            raise GraphError(f"two stages are called {s.name!r}")
        for name, kind in zip(s.inputs, s.reads, strict=True):
            if name not in writes:
                raise GraphError(f"stage {s.name} reads {name!r}, which no earlier stage writes")
            if writes[name] != kind:
                raise GraphError(
                    f"stage {s.name} reads {kind} records from {name!r}, which writes {writes[name]}"
                )
        writes[s.name] = s.writes


def _hashes(stages: Sequence[Stage]) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in stages:
        out[s.name] = digest(
            {"stage": s.name, "config": s.config, "inputs": [out.get(i, i) for i in s.inputs]}
        )
    return out


def compose(config: BuildConfig, parsers: Mapping[int, Parser]) -> Graph:
    """The build's stages: load, generate, one annotate stage per source, fuse, assemble."""
    cfg = config.hashed()
    limits = config.limits
    seed = {"seed": config.seed}
    stages: list[Stage] = [
        LoadStage(
            parsers,
            limits.max_question_bytes + limits.max_answer_bytes,
            limits.max_steps,
            {
                **seed,
                "inputs": cfg["inputs"],
                "limits": cfg["limits"],
                "shard_size": config.runner.shard_size,
            },
        ),
        GenerateStage(
            config.generate.rollouts_per_problem,
            config.policy.sampling.to_params(),
            config.seed,
            limits.max_steps,
            limits.max_answer_bytes,
            {**seed, "policy": cfg["policy"], "generate": cfg["generate"], "sandbox": cfg["sandbox"]},
        ),
    ]
    label_stages = []
    for spec, raw in zip(config.annotate, cfg["annotate"], strict=True):
        isolation = config.sandbox.isolation
        stages.append(
            AnnotateStage(
                spec,
                config.seed,
                isolation,
                {**seed, "annotator": raw, "isolation": isolation},
                model_policy=config.policy.kind != "simulated",
            )
        )
        label_stages.append(stage_name(spec.source))
    fuse = config.fuse
    params = FusionParams(
        among=tuple(fuse.among) if fuse.among is not None else None,
        clears=tuple(fuse.clears) if fuse.clears is not None else None,
        vouch=tuple(fuse.vouch) if fuse.vouch is not None else None,
        required=fuse.required,
        reliability=tuple(sorted(fuse.reliability.items())),
        reliability_from=tuple(fuse.reliability_from or ()),
        default_reliability=fuse.default_reliability,
        tool=fuse.tool,
        mc=fuse.mc,
        scores=fuse.scores,
    )
    stages.append(
        FuseStage(fuse.rule, config.fused_source, label_stages, {"fuse": cfg["fuse"]}, params, fuse.prof)
    )
    split = config.split
    stages.append(
        AssembleStage(
            config.labels.after_first_error,
            config.seed,
            split.validation,
            split.test,
            {**seed, "labels": cfg["labels"], "validation": split.validation, "test": split.test},
        )
    )
    check(stages)
    hashes = _hashes(stages)
    global_hash = digest({"assemble": hashes["assemble"], "split": cfg["split"]})
    return Graph(tuple(stages), hashes, global_hash, tuple(label_stages))


def provenance(config: BuildConfig) -> dict[str, dict[str, str]]:
    """Per source: what checked the steps and how isolated it ran (the manifest and the card)."""
    return {a.source: a.provenance(config.sandbox.isolation) for a in config.annotate}


def card_methods(config: BuildConfig) -> list[tuple[str, str]]:
    return [(a.source, a.card_sentence()) for a in config.annotate]


def describe(graph: Graph) -> list[dict[str, Any]]:
    return [{"name": s.name, "reads": list(s.inputs), "writes": s.writes} for s in graph.stages]
