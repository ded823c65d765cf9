"""The whole build configuration: YAML validated by pydantic, with errors that name the field.

A build reads ``inputs:`` (built-in suites and users' own problems or rollouts),
labels every rollout with each config under ``annotate:`` and fuses the sources
with ``fuse:``. Everything but ``output`` and ``runner.workers`` enters the
config hash; :func:`growth_of` says when a changed config can change a build in place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from prmforge.annotators.kinds import AnnotatorKind
from prmforge.schemas.config import (
    SUITE_DOMAINS,
    ArithSuite,
    CodeSuite,
    FuseConfig,
    GenerateConfig,
    Gsm8kSuite,
    LabelsConfig,
    LimitsConfig,
    LogicSuite,
    RunnerConfig,
    SandboxConfig,
    SplitConfig,
    Strict,
)
from prmforge.schemas.config_errors import format_validation_error
from prmforge.schemas.engines import PolicyConfig, SimulatedPolicyConfig
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.inputs import ProblemsInput, RolloutsInput
from prmforge.schemas.yaml_file import read_yaml

InputConfig = Annotated[
    ArithSuite | Gsm8kSuite | LogicSuite | CodeSuite | ProblemsInput | RolloutsInput,
    Field(discriminator="kind"),
]
_FILE_INPUTS = (Gsm8kSuite, ProblemsInput, RolloutsInput)
_UNBOUNDED = 1 << 62


def input_domains(spec: Any) -> frozenset[str]:
    """The problem domains an input can produce."""
    if isinstance(spec, ProblemsInput) and spec.columns is not None and spec.columns.domain is not None:
        return frozenset({"math", "logic", "code"})  # a domain column: any of them
    if isinstance(spec, ProblemsInput | RolloutsInput):
        return frozenset({spec.domain})
    return frozenset({SUITE_DOMAINS[spec.kind]})


def continuable(spec: Any, policy_kind: str = "simulated") -> bool:
    """Whether the policy can continue this input's rollouts from a prefix (Monte Carlo).

    The built-in policy continues the math problems it generated rollouts for; a model engine also
    continues imported math rollouts (any text is a prefix to a model).
    """
    if "math" not in input_domains(spec):
        return False
    return policy_kind != "simulated" or isinstance(spec, ArithSuite | Gsm8kSuite | ProblemsInput)


class BuildConfig(Strict):
    """A whole build. Everything but ``output``, ``runner.workers``, ``runner.cache`` and
    ``limits.max_quarantine_share`` enters the config hash."""

    name: str = Field(..., min_length=1, description="the build's name (the dataset card's title)")
    seed: int = Field(0, description="the build seed every other seed derives from")
    output: Path | None = Field(None, description="build directory; `prmforge build --output` overrides it")
    inputs: list[InputConfig] = Field(..., min_length=1, description="problems or rollouts to label")
    policy: PolicyConfig = Field(
        default_factory=SimulatedPolicyConfig,
        description="the generation engine: simulated (built in), transformers, openai or vllm",
    )
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="rollout sampling")
    annotate: list[AnnotatorKind] = Field(
        default_factory=lambda: [_default_mc()], min_length=1, description="the label sources"
    )
    fuse: FuseConfig = Field(default_factory=FuseConfig, description="how sources become the trained label")
    labels: LabelsConfig = Field(default_factory=LabelsConfig, description="the trained label convention")
    split: SplitConfig = Field(default_factory=SplitConfig, description="splits and final data files")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="how code runs")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="how the build is scheduled")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="input limits and failure gates")

    @field_validator("policy", mode="before")
    @classmethod
    def _simulated_by_default(cls, value: Any) -> Any:
        """A policy mapping without ``kind`` is the simulated one (as before engines had kinds)."""
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "simulated", **value}
        return value

    @model_validator(mode="after")
    def _problem_ids_unique(self) -> BuildConfig:
        """Two inputs must never produce the same problem ids (one would silently replace the other)."""
        seen_generated: dict[tuple[str, int], int] = {}
        ranges: list[tuple[int, str, int, int]] = []
        for position, spec in enumerate(self.inputs):
            if isinstance(spec, _FILE_INPUTS):
                path = str(spec.path) if spec.path is not None else "the default GSM8K file"
                end = spec.offset + spec.limit if spec.limit is not None else _UNBOUNDED
                for other, other_path, start, stop in ranges:
                    same_ids = (
                        isinstance(spec, ProblemsInput)
                        and (spec.columns is None or spec.columns.id is None)
                        and Path(other_path).stem == Path(path).stem
                    )
                    if same_ids and other_path != path and spec.offset < stop and start < end:
                        raise ValueError(
                            f"inputs.{position}: its problem ids (<file stem>-<row>) collide with those of "
                            f"inputs.{other}: both files are called {Path(path).stem!r}; map an id column "
                            "(columns.id) or rename one file"
                        )
                    if other_path == path and spec.offset < stop and start < end:
                        raise ValueError(
                            f"inputs.{position}: its rows overlap those of inputs.{other} (both read "
                            f"{path}); two inputs of one file must read disjoint row ranges"
                        )
                ranges.append((position, path, spec.offset, end))
                continue
            key = (spec.kind, self.seed + spec.seed)
            if key in seen_generated:
                raise ValueError(
                    f"inputs.{position}: generates the same problem ids as inputs.{seen_generated[key]} "
                    f"({spec.kind} with seed {key[1]}); give one of them another seed"
                )
            seen_generated[key] = position
        return self

    @model_validator(mode="after")
    def _sources_fit(self) -> BuildConfig:
        names = [a.source for a in self.annotate]
        for position, name in enumerate(names):
            if names.index(name) != position:
                raise ValueError(
                    f"annotate.{position}: source name {name!r} is used twice; give one a `name:`"
                )
        domains = frozenset().union(*(input_domains(s) for s in self.inputs))
        kinds = ", ".join(sorted({s.kind for s in self.inputs}))
        for position, annotator in enumerate(self.annotate):
            kind = annotator.kind
            if not annotator.domains & domains:
                raise ValueError(
                    f"annotate.{position}: {kind!r} labels {', '.join(sorted(annotator.domains))} problems "
                    f"only, and the inputs ({kinds}) give {', '.join(sorted(domains))}; it would label "
                    "nothing"
                )
            refusal = annotator.refuse(self.inputs)
            if refusal is not None:
                raise ValueError(f"annotate.{position}: {kind!r} {refusal}")
            if annotator.continues_prefixes and not any(
                continuable(s, self.policy.kind) for s in self.inputs
            ):
                what = (
                    "math inputs"
                    if self.policy.kind != "simulated"
                    else "the math inputs that generate their rollouts"
                )
                raise ValueError(
                    f"annotate.{position}: {kind!r} continues each step's prefix with the policy, which "
                    f"only {what} allow; inputs ({kinds}) need a tool method (equations, z3, compile-test, "
                    "lsp-reward)"
                )
        return self

    @model_validator(mode="after")
    def _model_policy_fits(self) -> BuildConfig:
        """A model engine writes free text: the logic and code suites need their scripted solution format."""
        if self.policy.kind == "simulated":
            return self
        for position, spec in enumerate(self.inputs):
            if spec.kind in ("logic", "code"):
                raise ValueError(
                    f"inputs.{position}: the {spec.kind} suite's rollouts come from its scripted policy (a "
                    f"structured solution format), not from a model; with policy.kind {self.policy.kind!r} "
                    "use math inputs (arith, gsm8k, problems) or imported rollouts"
                )
        return self

    @model_validator(mode="after")
    def _cascade_fits(self) -> BuildConfig:
        """A source skips what earlier sources decided: they must come before it in `annotate:`."""
        names = [a.source for a in self.annotate]
        for position, annotator in enumerate(self.annotate):
            needs = [("defer_to", e) for e in annotator.defer_to] + [
                ("of", e) for e in annotator.reads_labels_of()
            ]
            for field, earlier in needs:
                if earlier not in names[:position]:
                    where = "is not an annotator" if earlier not in names else "comes after it"
                    raise ValueError(
                        f"annotate.{position}.{field}: {earlier!r} {where}; list the sources a "
                        "cascade reads before the one that reads them"
                    )
        return self

    @model_validator(mode="after")
    def _fuse_fits(self) -> BuildConfig:
        names = [a.source for a in self.annotate]
        if self.fuse.source is not None and self.fuse.source not in names:
            raise ValueError(f"fuse.source: {self.fuse.source!r} is not an annotator; sources: {names}")
        if self.fuse.rule == "single" and self.fuse.source is None and len(names) > 1:
            raise ValueError(f"fuse.source: rule 'single' needs a source when there are several: {names}")
        named = {
            "among": self.fuse.among or [],
            "clears": self.fuse.clears or [],
            "vouch": self.fuse.vouch or [],
            "reliability": list(self.fuse.reliability),
            "reliability_from": self.fuse.reliability_from or [],
            "tool": [self.fuse.tool] if self.fuse.tool else [],
            "mc": [self.fuse.mc] if self.fuse.mc else [],
        }
        for key, sources in named.items():
            unknown = [s for s in sources if s not in names]
            if unknown:
                raise ValueError(f"fuse.{key}: {unknown} are not annotators; sources: {names}")
        if self.fuse.rule == "consensus":
            chosen = len(self.fuse.among or names)
            if self.fuse.required is not None and self.fuse.required > chosen:
                raise ValueError(f"fuse.required: {self.fuse.required} is more than the {chosen} sources")
        if self.fuse.rule == "weighted" and self.fuse.default_reliability is None:
            estimated = set(names) - set(self.fuse.reliability_from or names)
            missing = [n for n in names if n not in self.fuse.reliability and n not in estimated]
            if missing:
                raise ValueError(
                    f"fuse.reliability: no reliability for {missing}; give one or `default_reliability`"
                )
        return self

    @property
    def shards_per_worker(self) -> int:
        """Shards a local worker runs at once: as configured, else 2 with an engine that computes
        outside this process (an HTTP server, vLLM's engine-core process), whose calls then overlap
        the other shard's CPU work; 1 with one that computes in it (the simulated policy, transformers:
        on CPU its Python-heavy decoding and the other shard's work share one interpreter, measured
        0.74x in bench/bench_engine.py)."""
        if self.runner.shards_per_worker is not None:
            return self.runner.shards_per_worker
        return 2 if self.policy.kind in ("openai", "vllm") else 1

    @property
    def fused_source(self) -> str:
        """The source ``single`` fusion uses."""
        return self.fuse.source or self.annotate[0].source

    def hashed(self) -> dict[str, Any]:
        """The config as JSON, less what does not decide content (``output``, ``runner.workers``...)."""
        data = self.model_dump(mode="json")
        data.pop("output", None)
        placements = ("kind", "workers", "shards_per_worker", "beam", "ray")
        for placement in placements:  # where shards run, not what they hold
            data["runner"].pop(placement, None)
        data["runner"].pop("cache", None)  # a cached generation is the same generation
        data["limits"].pop("max_quarantine_share", None)  # a pass/fail threshold, checked at the end
        data["sandbox"].pop("warm", None)  # a warm jail gives the same verdicts as a fresh one, faster
        return data

    def content_hash(self) -> str:
        """Hash of everything that decides the dataset's content."""
        return digest(self.hashed())


def _default_mc() -> Any:
    from prmforge.annotators.kinds import MonteCarloConfig

    return MonteCarloConfig()


def digest(data: Any) -> str:
    """sha256 of canonical JSON."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


IN_PLACE = ("annotate", "fuse", "split")
"""The sections a finished build can change in place (sources only added)."""


@dataclass(frozen=True, slots=True)
class Reconfiguration:
    """How a changed config differs from a build's stored one, when it can change in place."""

    added: tuple[str, ...]  # the sources it adds, in order
    changed: tuple[str, ...]  # the sections of IN_PLACE that differ ("annotate" when sources were added)


def growth_of(old: dict[str, Any], new: dict[str, Any]) -> Reconfiguration | None:
    """How ``new`` changes ``old`` when it only adds sources, changes ``fuse:`` or changes ``split:``.

    Both are :meth:`BuildConfig.hashed` dicts. None when anything else differs (a source removed or
    changed, the seed, the policy, the inputs...): those change what the shards' committed stages hold.
    Added sources are computed, and fuse, assemble and the global stages recomputed, from the committed
    generations; a changed ``split:`` recomputes assemble (shares of validation and test) and the global
    stages only. Every stage's own hash decides what is reused.
    """
    rest_old = {k: v for k, v in old.items() if k not in IN_PLACE}
    rest_new = {k: v for k, v in new.items() if k not in IN_PLACE}
    if rest_old != rest_new:
        return None
    before, after = old.get("annotate", []), new.get("annotate", [])
    if any(a not in after for a in before):
        return None
    added = tuple(str(a.get("name") or a["kind"]) for a in after if a not in before)
    return Reconfiguration(added, tuple(k for k in IN_PLACE if old.get(k) != new.get(k)))


def parse_config(data: Any, origin: str = "<config>", base_dir: Path | None = None) -> BuildConfig:
    """Validate a mapping; relative input paths and ``output`` resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the configuration must be a mapping, got {type(data).__name__}")
    if "suites" in data and "inputs" not in data:
        raise ConfigError(f"{origin}: `suites:` is now called `inputs:`; rename the key")
    try:
        config = BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin, data, BuildConfig)) from None
    if base_dir is None:
        return config
    inputs = []
    for spec in config.inputs:
        path = getattr(spec, "path", None)
        if isinstance(path, Path) and not path.is_absolute():
            inputs.append(spec.model_copy(update={"path": (base_dir / path).absolute()}))
        else:
            inputs.append(spec)
    output = config.output
    if output is not None and not output.is_absolute():
        output = (base_dir / output).absolute()
    annotate = [
        spec.model_copy(update={"engine": resolve_model(spec.engine, base_dir)})
        if hasattr(spec, "engine")
        else resolve_model(spec, base_dir)  # a PRM annotator's model folder
        for spec in config.annotate
    ]
    return config.model_copy(
        update={
            "inputs": inputs,
            "output": output,
            "policy": resolve_model(config.policy, base_dir),
            "annotate": annotate,
        }
    )


def resolve_model(engine: Any, base_dir: Path) -> Any:
    """An engine config whose ``model`` names a folder beside the configuration, made absolute (a Hub
    name such as ``Qwen/Qwen2.5-Math-7B`` that is no such folder is kept as written)."""
    model = getattr(engine, "model", None)
    if getattr(engine, "kind", None) not in ("transformers", "vllm", "prm"):  # a server's model is a name
        return engine
    if not isinstance(model, str) or Path(model).is_absolute() or not (base_dir / model).exists():
        return engine
    return engine.model_copy(update={"model": str((base_dir / model).absolute())})


def load_config(path: Path) -> BuildConfig:
    """Read and validate a YAML build configuration; relative paths resolve against its folder."""
    data = read_yaml(path)
    return parse_config(data, origin=str(path), base_dir=path.absolute().parent)
