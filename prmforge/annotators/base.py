"""The annotator contract: rollouts in, one :class:`StepLabels` per rollout out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from prmforge.schemas.records import Problem, Rollout, StepLabels


@runtime_checkable
class Annotator(Protocol):
    """Labels every step of every rollout.

    ``rollouts`` arrive redacted (``truth is None``); ``problems`` maps
    ``problem_id`` to the problem each rollout answers. The result has one
    :class:`StepLabels` per rollout, in the same order, with
    ``len(values) == len(hard) == len(rollout.steps)``.
    """

    @property
    def name(self) -> str: ...

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]: ...


@runtime_checkable
class LabelReader(Annotator, Protocol):
    """An annotator that also reads the labels earlier sources gave the same rollouts (vouch).

    ``earlier[source][rollout_id]`` holds the labels of each source its config's
    ``reads_labels_of`` names (a rollout a source quarantined is absent).
    """

    def annotate_given(
        self,
        problems: Mapping[str, Problem],
        rollouts: Sequence[Rollout],
        earlier: Mapping[str, Mapping[str, StepLabels]],
    ) -> list[StepLabels]: ...
