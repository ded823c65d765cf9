"""The annotator configs of the built-in labelling methods, each building its own annotator.

``AnnotatorKind`` is the discriminated union the build configuration's
``annotate:`` list holds, e.g. ``[{kind: mc, n: 8}, {kind: equations}]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.annotators.judge_config import JudgeConfig
from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.omegaprm_config import OmegaPRMConfig
from prmforge.annotators.prm_config import PRMConfig
from prmforge.annotators.scan_config import ScanConfig
from prmforge.annotators.tool import ToolAnnotator
from prmforge.annotators.vouch_config import VouchConfig
from prmforge.schemas.config import CodeSuite, SamplingConfig
from prmforge.schemas.seeds import derive_seed
from prmforge.verifiers.answer import AnswerGrader

NO_CODE = "no code executed"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


class MonteCarloConfig(AnnotatorConfig):
    """Monte Carlo estimation (Math-Shepherd): a step's value is the share of N completions that reach
    the gold answer."""

    domains = frozenset({"math"})
    continues_prefixes = True

    kind: Literal["mc"] = "mc"
    n: int = Field(8, ge=1, description="completions per step (Math-Shepherd N)")
    early_stop: bool = Field(False, description="stop at the first step whose estimate is 0 (SCAN)")
    last_step_from_outcome: bool = Field(True, description="label the last step by the rollout's own outcome")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling of completions")

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(
            MonteCarloAnnotator(
                policy=context.policy,
                grader=AnswerGrader(),
                n=self.n,
                sampling=self.sampling.to_params(),
                # A named source gets its own stream, so two MC sources are independent estimates.
                seed=context.seed if self.name is None else derive_seed(context.seed, "annotator", self.name),
                early_stop=self.early_stop,
                last_step_from_outcome=self.last_step_from_outcome,
                name=self.source,
            )
        )

    def provenance(self, isolation: str) -> dict[str, str]:
        return {"method": "mc", "tool": "none", "isolation": NO_CODE}

    def card_sentence(self) -> str:
        return (
            f"Monte Carlo estimation (Math-Shepherd), N={self.n} completions per step, early stop "
            f"{_on(self.early_stop)}, last step from outcome {_on(self.last_step_from_outcome)}."
        )


class EquationsConfig(AnnotatorConfig):
    """Exact rational check of every equality a step states."""

    domains = frozenset({"math"})
    kind: Literal["equations"] = "equations"

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        from prmforge.verifiers.equations import EquationVerifier

        return BuiltAnnotator(ToolAnnotator(EquationVerifier(), self.source))

    def provenance(self, isolation: str) -> dict[str, str]:
        return {"method": "equations", "tool": "exact rational arithmetic", "isolation": NO_CODE}

    def card_sentence(self) -> str:
        return "exact check of the equalities each step states (abstains when nothing is checkable)."


class Z3Config(AnnotatorConfig):
    """Z3 local entailment of each inference from the premises it cites (FoVer)."""

    domains = frozenset({"logic"})
    kind: Literal["z3"] = "z3"
    rlimit: int = Field(5_000_000, ge=0, description="Z3's deterministic resource budget per query (0: none)")
    wall_timeout_s: float = Field(20.0, gt=0, description="hard kill of one check, seconds")
    memory_mb: int = Field(1024, ge=0, description="the Z3 worker's address-space limit (0: none)")

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier, Z3Settings

        settings = Z3Settings(
            rlimit=self.rlimit, wall_timeout_s=self.wall_timeout_s, memory_mb=self.memory_mb
        )
        z3 = Z3EntailmentVerifier(settings)
        return BuiltAnnotator(ToolAnnotator(z3, self.source), z3.close)

    def provenance(self, isolation: str) -> dict[str, str]:
        import z3

        return {
            "method": "z3",
            "tool": f"z3 {z3.get_version_string()}",
            "isolation": "child process with an address-space rlimit, deterministic rlimit, hard kill",
        }

    def card_sentence(self) -> str:
        return "Z3 local entailment of each inference from its cited premises (FoVer)."


class CompileTestConfig(AnnotatorConfig):
    """Compile each line's program prefix and run it against the unit tests in the sandbox (PRLCoder)."""

    domains = frozenset({"code"})
    kind: Literal["compile-test"] = "compile-test"

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(ToolAnnotator(context.programs(), self.source))

    def provenance(self, isolation: str) -> dict[str, str]:
        """The isolation the sandbox reaches on this machine, as its layers (the strongest mode is chosen
        automatically: root with cgroups, or an unprivileged user namespace), not merely as asked."""
        from prmforge.verifiers.sandbox import probe_isolation

        report = probe_isolation()
        if isolation == "bwrap" and report.mode is not None:
            how = f"{report.layers} (namespaces, no network, read-only system, seccomp, rlimits)"
        else:
            how = "cleared environment + rlimits only (opted in)"
        return {"method": "compile-test", "tool": "gcc + python3 in the sandbox", "isolation": how}

    def card_sentence(self) -> str:
        return "compile and run each line's program against unit tests in the sandbox (PRLCoder)."


class LspRewardConfig(AnnotatorConfig):
    """Language-server process reward (Lanser-CLI): pyright diagnostics of each line's program prefix."""

    domains = frozenset({"code"})
    kind: Literal["lsp-reward"] = "lsp-reward"
    threshold: float = Field(0.2, description="a line whose reward is below this is invalid")
    diagnostics_timeout_s: float = Field(10.0, gt=0, description="wait for diagnostics, seconds")

    def refuse(self, inputs: Sequence[object]) -> str | None:
        for position, spec in enumerate(inputs):
            if isinstance(spec, CodeSuite) and "c" in spec.languages:
                return (
                    f"has a language server for Python only (pyright), and inputs.{position} gives C "
                    "programs: set its `languages: [python]`, or label C with compile-test"
                )
        return None

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        from prmforge.verifiers.lsp_reward import pyright_lsp_reward_verifier

        verifier = pyright_lsp_reward_verifier(
            threshold=self.threshold,
            diagnostics_timeout_s=self.diagnostics_timeout_s,
            use_bwrap=context.isolation == "bwrap",
        )
        return BuiltAnnotator(ToolAnnotator(verifier, self.source), verifier.close)

    def provenance(self, isolation: str) -> dict[str, str]:
        if isolation == "bwrap":
            how = "bwrap (all namespaces, no network, uid 65534, read-only system) + prlimit"
        else:
            how = "cleared environment + rlimits only (opted in)"
        return {"method": "lsp-reward", "tool": "pyright language server", "isolation": how}

    def card_sentence(self) -> str:
        return "language-server process reward (Lanser-CLI, weights 0.5/0.4/0.1)."


AnnotatorKind = Annotated[
    MonteCarloConfig
    | OmegaPRMConfig
    | ScanConfig
    | VouchConfig
    | EquationsConfig
    | Z3Config
    | CompileTestConfig
    | LspRewardConfig
    | JudgeConfig
    | PRMConfig,
    Field(discriminator="kind"),
]
