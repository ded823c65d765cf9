"""What every annotator config declares, and what building an annotator may use.

Each labelling method has one pydantic config model beside its class (see
:mod:`prmforge.annotators.kinds`). The model names the method (``kind``), the
source its labels carry (``name``, default: the kind), the domains it can
label, whether it continues prefixes with the policy, its provenance and the
sentence the dataset card prints; ``build`` makes the annotator. Nothing else
in the project dispatches on an annotator's kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from prmforge.annotators.base import Annotator
from prmforge.policies.base import Policy


def _no_engines_for(config: object) -> Policy:
    raise ValueError(f"this context builds no model engines (asked for {config!r})")


@dataclass(frozen=True, slots=True)
class AnnotatorContext:
    """What a worker hands an annotator config when it builds the annotator.

    ``policy`` is the worker's engine (behind the request cache); ``programs``
    gives the worker's shared compile-and-test verifier, so a program the outcome
    grader ran is not run again when its lines are labelled. ``engine`` builds
    (once per worker and configuration, behind the same request cache) the model
    engine an :data:`~prmforge.schemas.engines.EngineConfig` names, e.g. a judge's.
    """

    policy: Policy
    seed: int
    isolation: str
    programs: Callable[[], Any]
    engine: Callable[[Any], Policy] = field(default=_no_engines_for)


@dataclass(slots=True)
class BuiltAnnotator:
    """An annotator and the resources it holds (a Z3 worker, a language server), closed at teardown."""

    annotator: Annotator
    close: Callable[[], None] = field(default=lambda: None)


class AnnotatorConfig(BaseModel, ABC):
    """Base of the annotator configs: one subclass per method, discriminated by ``kind``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: ClassVar[frozenset[str]] = frozenset()
    """The problem domains this method can label; it abstains on others."""
    continues_prefixes: ClassVar[bool] = False
    """True when the method asks the policy to continue a rollout's prefixes (Monte Carlo)."""
    samples_a_model: ClassVar[bool] = False
    """True when the method runs a model engine of its own (a judge): its stage holds an engine."""

    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        max_length=64,
        description="the source name its labels carry (default: the kind); unique in a build; lower-case "
        "letters, digits, '_', '.', '-' (it names the stage's folder)",
    )

    defer_to: list[str] = Field(
        default_factory=list,
        description="a cascade: earlier, precise sources (equations, z3, compile-test) whose located errors "
        "this one accepts; on a rollout where one of them found the first error it abstains at no cost "
        "(fusion takes their label); their 'no error' is not deferred to (a checker's recall is low)",
    )

    @property
    def source(self) -> str:
        kind: str = getattr(self, "kind")  # noqa: B009 - every subclass declares its Literal kind
        return self.name or kind

    def reads_labels_of(self) -> tuple[str, ...]:
        """Earlier sources whose labels this method reads (its stage depends on theirs; the built
        annotator then offers ``annotate_given``); none by default."""
        return ()

    def refuse(self, inputs: Sequence[object]) -> str | None:
        """Why this source cannot label some of ``inputs`` although it supports their domain (None: it can).

        The build configuration refuses it at validation, so a tool that cannot run is never silent.
        """
        return None

    @abstractmethod
    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        """The annotator, ready to label rollouts of this worker."""

    @abstractmethod
    def provenance(self, isolation: str) -> dict[str, str]:
        """What checks the steps, and how isolated it runs: recorded in the manifest and the card."""

    @abstractmethod
    def card_sentence(self) -> str:
        """One sentence for the dataset card's method table."""
