"""The parts of a build configuration that need nothing above ``schemas``.

The whole build configuration (:class:`prmforge.pipelines.config.BuildConfig`)
adds the annotator configs, which live beside their classes in
``prmforge.annotators``. Every model forbids unknown keys and is frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from prmforge.schemas.records import SamplingParams, Split


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ArithSuite(Strict):
    """Generated multi-step arithmetic word problems with exact truth."""

    kind: Literal["arith"] = "arith"
    count: int = Field(40, ge=1, description="number of problems generated")
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    min_steps: int = Field(2, ge=1, description="fewest steps of a reference solution")
    max_steps: int = Field(6, ge=1, description="most steps of a reference solution")
    offset: int = Field(0, ge=0, description="first problem index to use (0-based)")
    limit: int | None = Field(None, ge=1, description="number of problems to use; all when omitted")

    @model_validator(mode="after")
    def _steps_ordered(self) -> ArithSuite:
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        return self


class Gsm8kSuite(Strict):
    """GSM8K problems replayed from their calculator annotations."""

    kind: Literal["gsm8k"] = "gsm8k"
    path: Path | None = Field(
        None, description="a GSM8K-format JSONL file; default: the shared GSM8K train file"
    )
    offset: int = Field(0, ge=0, description="first line to read (0-based)")
    limit: int | None = Field(None, ge=1, description="number of lines to read; all when omitted")


class LogicSuite(Strict):
    """Propositional and first-order derivations with injected invalid inferences (checked by Z3)."""

    kind: Literal["logic"] = "logic"
    count: int = Field(24, ge=1, description="number of problems generated")
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    min_steps: int = Field(3, ge=1, description="fewest steps of a reference derivation")
    max_steps: int = Field(8, ge=1, description="most steps of a reference derivation")
    first_order_share: float = Field(0.5, ge=0.0, le=1.0, description="share of first-order problems")
    offset: int = Field(0, ge=0, description="first problem index to use (0-based)")
    limit: int | None = Field(None, ge=1, description="number of problems to use; all when omitted")

    @model_validator(mode="after")
    def _steps_ordered(self) -> LogicSuite:
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        return self


CodeLanguage = Literal["python", "c"]
CODE_LANGUAGES: tuple[CodeLanguage, ...] = ("python", "c")


class CodeSuite(Strict):
    """Small Python and C functions with unit tests; rollouts carry injected bugs or truncations."""

    kind: Literal["code"] = "code"
    count: int = Field(16, ge=1, description="number of problems generated")
    seed: int = Field(0, description="generator seed (the build seed is added to it)")
    languages: list[CodeLanguage] = Field(
        default_factory=lambda: list(CODE_LANGUAGES), min_length=1, description="languages of the tasks"
    )
    offset: int = Field(0, ge=0, description="first problem index to use (0-based)")
    limit: int | None = Field(None, ge=1, description="number of problems to use; all when omitted")


BuiltinSuite = ArithSuite | Gsm8kSuite | LogicSuite | CodeSuite
SUITE_DOMAINS: dict[str, str] = {"arith": "math", "gsm8k": "math", "logic": "logic", "code": "code"}


class SamplingConfig(Strict):
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_tokens: int = Field(1024, ge=1, description="most tokens per completion")

    def to_params(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)


class ScriptedConfig(Strict):
    """The policy of the `logic` and `code` suites: whole solutions with seeded errors."""

    logic_error_rate: float = Field(0.2, ge=0.0, le=1.0, description="chance a derivation step is invalid")
    code_bug_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="chance a program has a bug or is truncated"
    )


class GenerateConfig(Strict):
    rollouts_per_problem: int = Field(4, ge=1, description="rollouts sampled per problem")


class ProfConfig(Strict):
    """PROF's process-consistency filter over each question's rollouts (METHODS.md §2(h))."""

    aggregate: Literal["mean", "min"] = Field(
        "mean", description="a rollout's process score: the mean or the min of its fused step scores"
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="the score that splits agreeing from not")
    balance: bool = Field(
        True,
        description="keep as many correct as incorrect agreeing rollouts per question (the most "
        "consistent of each); a question with agreeing rollouts on one side only keeps none",
    )


class FuseConfig(Strict):
    """How the sources' labels become the trained label (METHODS.md, fusion)."""

    rule: Literal["single", "earliest", "majority", "consensus", "weighted", "grounded"] = Field(
        "single",
        description="single: one named source; earliest: the earliest first error any deciding source "
        "claims; majority: per-step vote among the sources that did not abstain; consensus: keep a "
        "rollout only when the sources (`among`) agree on its first error (Qwen's MC + judge filter); "
        "weighted: per-step vote weighted by each source's log-odds reliability; grounded: GroundedPRM's "
        "hybrid, the `tool` source's verdicts where it has them, else `mc`'s, else the outcome",
    )
    source: str | None = Field(None, description="the source `single` uses; default: the only annotator")
    among: list[str] | None = Field(None, description="consensus: the sources that must agree (default: all)")
    clears: list[str] | None = Field(
        None,
        description="earliest: the sources whose 'no error' decides a rollout that no source flags "
        "(default: any source's); a checker that sees only some kinds of error (equations) passing "
        "every step is no evidence that the rollout is right",
    )
    vouch: list[str] | None = Field(
        None,
        description="earliest: an error after step 0 is trained only when one of these sources decided "
        "the rollout, vouching for the steps before it (null: off); an equation checker's first failure "
        "says nothing of a wrong operand before it",
    )
    required: int | None = Field(
        None, ge=1, description="consensus: how many of them must have decided (default: all of them)"
    )
    reliability: dict[str, float] = Field(
        default_factory=dict, description="weighted: each source's reliability in (0, 1) (0.5: no say)"
    )
    reliability_from: list[str] | None = Field(
        None,
        description="weighted: estimate the other sources' reliabilities in each shard on the steps these "
        "reference sources are certain of (a checker's passed prefix and its first failure); "
        "`reliability` still gives the references' own (and overrides an estimate)",
    )
    default_reliability: float | None = Field(
        None, gt=0, lt=1, description="weighted: the reliability of a source `reliability` does not list"
    )
    tool: str | None = Field(None, description="grounded: the tool source whose verdicts decide their steps")
    mc: str | None = Field(
        None, description="grounded: the Monte Carlo source for steps the tool leaves open"
    )
    prof: ProfConfig | None = Field(
        None,
        description="PROF filter: leave out the rollouts of a question whose fused process score "
        "disagrees with their outcome (null: off; `{}`: defaults); left out with the reason",
    )
    scores: Literal["mean", "min_form"] = Field(
        "mean",
        description="the trained soft `scores`: mean, per step the mean of the sources' values (`single`: "
        "its source's); min_form, min-form credit (PURE): a step's score is the least of those from it "
        "on, so later evidence lowers earlier steps and step 0 holds the rollout's min score (PROF, "
        "when on, reads these scores)",
    )

    @model_serializer(mode="wrap")
    def _default_scores_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``scores`` is dumped only when not the default: a config that leaves it keeps the config hash
        (and the fuse stage's hash) it had before the option existed, so its builds resume."""
        data: dict[str, Any] = handler(self)
        if data.get("scores") == "mean":
            del data["scores"]
        return data

    @model_validator(mode="after")
    def _rule_has_what_it_reads(self) -> FuseConfig:
        if self.rule == "grounded" and self.tool is None:
            raise ValueError("rule 'grounded' needs `tool`: the tool source whose verdicts decide")
        if self.clears is not None and self.rule != "earliest":
            raise ValueError(f"clears: read by rule 'earliest' only, not {self.rule!r}")
        if self.clears == []:
            raise ValueError("clears: name at least one source (an empty list would never decide 'no error')")
        if self.vouch is not None and self.rule != "earliest":
            raise ValueError(f"vouch: read by rule 'earliest' only, not {self.rule!r}")
        if self.vouch == []:
            raise ValueError(
                "vouch: name at least one source (an empty list would keep no error after step 0)"
            )
        for name, p in self.reliability.items():
            if not 0 < p < 1:
                raise ValueError(f"reliability of {name!r} must be in (0, 1), got {p}")
        return self


class LabelsConfig(Strict):
    after_first_error: Literal["negative", "truncate"] = Field(
        "negative", description="label steps after the first error negative, or drop them"
    )


class NearDedupConfig(Strict):
    """Near-duplicate rollouts of one problem, by MinHash of word shingles of their completions."""

    threshold: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="drop a row whose estimated Jaccard with an earlier kept row of its problem is at "
        "least this",
    )
    num_perm: int = Field(128, ge=8, description="MinHash permutations (the estimate's resolution)")
    shingle: int = Field(5, ge=1, description="words per shingle")


def _train_only() -> list[Split]:
    return ["train"]


class BalanceConfig(Strict):
    """Positive/negative balance of a split, reached by dropping rows of the majority class."""

    unit: Literal["rollout", "step"] = Field(
        "rollout",
        description="rollout: the share of rows without an error; step: the share of positive step labels",
    )
    target: float = Field(0.5, gt=0.0, lt=1.0, description="the positive share to reach")
    splits: list[Split] = Field(
        default_factory=_train_only, min_length=1, description="the splits balanced (each on its own)"
    )

    @model_validator(mode="after")
    def _distinct(self) -> BalanceConfig:
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits {self.splits} name a split twice")
        return self


class SplitConfig(Strict):
    validation: float = Field(0.0, ge=0.0, lt=1.0, description="share of questions held out for validation")
    test: float = Field(0.0, ge=0.0, lt=1.0, description="share of questions held out for test")
    dedup: bool = Field(
        False, description="drop rows whose (prompt, completions) repeat an earlier row (exact match)"
    )
    near_dedup: NearDedupConfig | None = Field(
        None,
        description="also drop near-duplicate rows of the same problem (MinHash); null: off, `{}`: defaults",
    )
    balance: BalanceConfig | None = Field(
        None, description="balance positives and negatives per split by dropping rows; null: off"
    )
    rows_per_file: int = Field(50_000, ge=1, description="most rows per final data file")

    @model_serializer(mode="wrap")
    def _unset_options_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``near_dedup`` and ``balance`` are dumped only when on: a config that uses neither keeps the
        config hash (and the global stages' hash) it had before they existed, so its builds resume."""
        data: dict[str, Any] = handler(self)
        for key in ("near_dedup", "balance"):
            if data.get(key, ...) is None:
                del data[key]
        return data

    @model_validator(mode="after")
    def _shares(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError(f"validation + test ({self.validation} + {self.test}) must leave rows for train")
        return self


class SandboxConfig(Strict):
    isolation: Literal["bwrap", "rlimits-only"] = Field(
        "bwrap",
        description="how model-written code runs: `bwrap`, the strongest kernel sandbox this machine "
        "allows (as root: cgroups and a uid switch; otherwise an unprivileged user namespace), chosen "
        "automatically and named in the card; or (explicit opt-in) resource limits only",
    )
    warm: bool = Field(
        True,
        description="run code in warm jails (one pool per worker, each jail proved clean after every "
        "program or replaced); false: a fresh jail per execution (slower, for when even a reused, "
        "checked worker is too much sharing)",
    )


class BeamRunnerConfig(Strict):
    runner: str = Field(
        "FnApiRunner",
        description="the Beam runner: FnApiRunner (in this process; what the tests use), FlinkRunner, "
        "SparkRunner, PortableRunner or DataflowRunner (`--beam-runner` overrides it)",
    )
    options: list[str] = Field(
        default_factory=list,
        description="pipeline options passed to Beam as written, e.g. `--flink_master=HOST:8081`, "
        "`--environment_type=LOOPBACK`, `--project=P` (`--beam-option` adds to them)",
    )


class RayRunnerConfig(Strict):
    address: str | None = Field(
        None,
        description="an existing cluster (`auto`, `ray://HOST:10001`); none starts a local Ray for the "
        "build and stops it after (`--ray-address` overrides it)",
    )
    max_attempts: int = Field(
        3, ge=1, description="attempts of a shard (a crashed worker, a poison row) before it is quarantined"
    )
    num_gpus: float = Field(
        0.0, ge=0.0, description="GPUs each shard worker that holds a model engine asks Ray for"
    )


class RunnerConfig(Strict):
    kind: Literal["local", "beam", "ray"] = Field(
        "local",
        description="what schedules the shards: `local` (a process pool), `beam` (Apache Beam) or `ray` "
        "(Ray); every runner commits through the same manifest and gives the same content hash",
    )
    beam: BeamRunnerConfig = Field(default_factory=BeamRunnerConfig, description="options of `kind: beam`")
    ray: RayRunnerConfig = Field(default_factory=RayRunnerConfig, description="options of `kind: ray`")
    workers: int = Field(2, ge=0, description="worker processes; 0 runs in the calling process")
    shards_per_worker: int | None = Field(
        None,
        ge=1,
        le=8,
        description="`local` runner: shards a worker runs at once on threads, so one shard's grading, "
        "labelling and commits overlap another's engine calls (the engine serves one call at a time); "
        "default: 2 with an engine that computes outside this process (`openai`, `vllm`), 1 otherwise",
    )
    shard_size: int = Field(16, ge=1, description="input rows per shard")
    cache: bool = Field(True, description="cache every generation request in OUTPUT/cache.sqlite")


class LimitsConfig(Strict):
    max_question_bytes: int = Field(65536, ge=1, description="longer questions are quarantined")
    max_steps: int = Field(
        128, ge=1, description="rollouts or reference solutions with more steps are quarantined"
    )
    max_answer_bytes: int = Field(
        32768, ge=1, description="longer reference answers or rollout texts are quarantined"
    )
    max_quarantine_share: float = Field(
        0.5, ge=0.0, le=1.0, description="a build quarantining more of a stage's rows exits non-zero"
    )
