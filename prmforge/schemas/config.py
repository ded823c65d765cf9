"""The build configuration: YAML validated by pydantic, with errors that name the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import SamplingParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArithSuite(_Strict):
    """Generated multi-step arithmetic word problems with exact truth."""

    kind: Literal["arith"] = "arith"
    count: int = Field(40, ge=1, description="number of problems")
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    min_steps: int = Field(2, ge=1)
    max_steps: int = Field(6, ge=1)

    @model_validator(mode="after")
    def _steps_ordered(self) -> ArithSuite:
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        return self


class Gsm8kSuite(_Strict):
    """GSM8K problems replayed from their calculator annotations."""

    kind: Literal["gsm8k"] = "gsm8k"
    path: Path | None = Field(
        None, description="a GSM8K-format JSONL file; default: the shared GSM8K train file"
    )
    offset: int = Field(0, ge=0, description="first line to read (0-based)")
    limit: int | None = Field(None, ge=1, description="number of lines to read; all when omitted")


class LogicSuite(_Strict):
    """Propositional and first-order derivations with injected invalid inferences (checked by Z3)."""

    kind: Literal["logic"] = "logic"
    count: int = Field(24, ge=1)
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    min_steps: int = Field(3, ge=1)
    max_steps: int = Field(8, ge=1)
    first_order_share: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _steps_ordered(self) -> LogicSuite:
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        return self


CodeLanguage = Literal["python", "c"]
CODE_LANGUAGES: tuple[CodeLanguage, ...] = ("python", "c")


class CodeSuite(_Strict):
    """Small Python and C functions with unit tests; rollouts carry injected bugs or truncations."""

    kind: Literal["code"] = "code"
    count: int = Field(16, ge=1)
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    languages: list[CodeLanguage] = Field(default_factory=lambda: list(CODE_LANGUAGES), min_length=1)


Suite = Annotated[ArithSuite | Gsm8kSuite | LogicSuite | CodeSuite, Field(discriminator="kind")]
MATH_KINDS = frozenset({"arith", "gsm8k"})


class SamplingConfig(_Strict):
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)

    def to_params(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)


class ScriptedConfig(_Strict):
    """The policy of the `logic` and `code` suites: whole solutions with seeded errors."""

    logic_error_rate: float = Field(0.2, ge=0.0, le=1.0, description="chance a derivation step is invalid")
    code_bug_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="chance a program has a bug or is truncated"
    )


class PolicyConfig(_Strict):
    kind: Literal["simulated"] = Field("simulated", description="the generation backend")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    params: dict[str, float] = Field(
        default_factory=dict, description="overrides of the simulated policy's parameters"
    )
    scripted: ScriptedConfig = Field(default_factory=ScriptedConfig)


class GenerateConfig(_Strict):
    rollouts_per_problem: int = Field(4, ge=1)


class MonteCarloConfig(_Strict):
    n: int = Field(8, ge=1, description="completions per step (Math-Shepherd N)")
    early_stop: bool = Field(False, description="stop at the first step whose estimate is 0 (SCAN)")
    last_step_from_outcome: bool = Field(True, description="label the last step by the rollout's own outcome")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


Method = Literal["mc", "equations", "z3", "compile-test", "lanser"]


class AnnotateConfig(_Strict):
    method: Method = Field(
        "mc",
        description="mc: Monte Carlo estimation; equations: exact check of stated equalities; "
        "z3: local entailment of each inference; compile-test: run programs in the sandbox; "
        "lanser: language-server process reward",
    )
    isolation: Literal["bwrap", "rlimits-only"] = Field(
        "bwrap",
        description="how model-written code runs: full kernel sandbox, or (explicit opt-in, e.g. "
        "without root) resource limits only",
    )
    mc: MonteCarloConfig = Field(default_factory=MonteCarloConfig)


class LabelsConfig(_Strict):
    after_first_error: Literal["negative", "truncate"] = Field(
        "negative", description="label steps after the first error negative, or drop them"
    )


class SplitConfig(_Strict):
    validation: float = Field(0.0, ge=0.0, lt=1.0, description="share of problems held out for validation")


class RunnerConfig(_Strict):
    kind: Literal["local"] = "local"
    workers: int = Field(2, ge=0, description="worker processes; 0 runs in the calling process")
    shard_size: int = Field(16, ge=1, description="input rows per shard")
    cache: bool = Field(True, description="cache every generation request in OUTPUT/cache.sqlite")


class LimitsConfig(_Strict):
    max_question_bytes: int = Field(65536, ge=1, description="longer questions are quarantined")


class BuildConfig(_Strict):
    """A whole build. Everything but ``output`` and ``runner.workers`` enters the config hash."""

    name: str = Field(..., min_length=1)
    seed: int = 0
    output: Path | None = Field(None, description="build directory; `prmforge build --output` overrides it")
    suites: list[Suite] = Field(..., min_length=1)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @model_validator(mode="after")
    def _problem_ids_unique(self) -> BuildConfig:
        """Two suites must never produce the same problem ids (one would silently replace the other)."""
        seen_generated: dict[tuple[str, int], int] = {}
        gsm8k_ranges: list[tuple[int, int, int]] = []
        for position, suite in enumerate(self.suites):
            if isinstance(suite, Gsm8kSuite):
                end = suite.offset + suite.limit if suite.limit is not None else 1 << 62
                for other, start, stop in gsm8k_ranges:
                    if suite.offset < stop and start < end:
                        raise ValueError(
                            f"suites.{position}: its lines overlap those of suites.{other}; GSM8K problem "
                            "ids are gsm8k-<line>, so two gsm8k suites must read disjoint line ranges"
                        )
                gsm8k_ranges.append((position, suite.offset, end))
                continue
            key = (suite.kind, self.seed + suite.seed)
            if key in seen_generated:
                raise ValueError(
                    f"suites.{position}: generates the same problem ids as suites.{seen_generated[key]} "
                    f"({suite.kind} with seed {key[1]}); give one of them another seed"
                )
            seen_generated[key] = position
        return self

    @model_validator(mode="after")
    def _method_fits_suites(self) -> BuildConfig:
        kinds = {suite.kind for suite in self.suites}
        if self.annotate.method == "mc" and not kinds <= MATH_KINDS:
            raise ValueError(
                f"annotate.method 'mc' needs a policy that continues a prefix, which only the math suites "
                f"have; suites {sorted(kinds - MATH_KINDS)} need a tool method (z3, compile-test, lanser)"
            )
        return self

    def content_hash(self) -> str:
        """Hash of everything that decides the dataset's content."""
        data = self.model_dump(mode="json")
        data.pop("output", None)
        data["runner"].pop("workers", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: {err.error_count()} problem(s) in the configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            msg = f"must be one of {e['ctx']['expected']} (got {e['input']!r})"
        elif e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown kind {e['ctx']['tag']!r}; allowed: {e['ctx']['expected_tags']}"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "<config>", base_dir: Path | None = None) -> BuildConfig:
    """Validate a mapping; relative suite paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the configuration must be a mapping, got {type(data).__name__}")
    try:
        config = BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None
    if base_dir is None:
        return config
    suites: list[ArithSuite | Gsm8kSuite | LogicSuite | CodeSuite] = []
    for suite in config.suites:
        if isinstance(suite, Gsm8kSuite) and suite.path is not None and not suite.path.is_absolute():
            suites.append(suite.model_copy(update={"path": (base_dir / suite.path).resolve()}))
        else:
            suites.append(suite)
    output = config.output
    if output is not None and not output.is_absolute():
        output = (base_dir / output).resolve()
    return config.model_copy(update={"suites": suites, "output": output})


def load_config(path: Path) -> BuildConfig:
    """Read and validate a YAML build configuration."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    # Relative paths in a config are relative to the directory the config is run from.
    return parse_config(data, origin=str(path), base_dir=Path.cwd())
