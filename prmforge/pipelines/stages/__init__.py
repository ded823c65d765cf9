"""The shard-local stages: load, generate, one annotate stage per source, fuse, assemble."""

from prmforge.pipelines.stages.annotate import AnnotateStage
from prmforge.pipelines.stages.assemble import AssembleStage, split_for
from prmforge.pipelines.stages.fuse import FuseStage
from prmforge.pipelines.stages.generate import GenerateStage, rollout_id
from prmforge.pipelines.stages.load import LoadStage, SourceRow

__all__ = [
    "AnnotateStage",
    "AssembleStage",
    "FuseStage",
    "GenerateStage",
    "LoadStage",
    "SourceRow",
    "rollout_id",
    "split_for",
]
