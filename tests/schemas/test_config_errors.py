"""format_validation_error: exact messages on small models shaped like the build configuration."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from prmforge.schemas.config_errors import format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Strict):
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class MonteCarlo(_Strict):
    kind: Literal["mc"]
    n: int = Field(8, ge=1)
    sampling: Sampling = Field(default_factory=Sampling)
    color: Color = Color.RED


class Equations(_Strict):
    kind: Literal["equations"]
    mode: Literal["strict", "loose"] = "strict"
    switch: Literal["on", "off", "auto"] = "auto"


class Steps(_Strict):
    kind: Literal["steps"]
    min_steps: int = 1
    max_steps: int = 4

    @model_validator(mode="after")
    def _ordered(self) -> Steps:
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        if self.min_steps == 0 and self.max_steps > 1:
            raise ValueError("min_steps: 0 needs max_steps <= 1")
        return self


Annotator = Annotated[MonteCarlo | Equations | Steps, Field(discriminator="kind")]


class Input(_Strict):
    offset: int = Field(0, ge=0)
    path: Path | None = None


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class Build(_Strict):
    name: Annotated[str, AfterValidator(_nonblank)]
    seed: int = 0
    workers: int = Field(2, ge=1)
    inputs: list[Input] = Field(default_factory=list)
    annotate: list[Annotator] = Field(default_factory=list)
    single: MonteCarlo | Equations | None = Field(None, discriminator="kind")
    params: dict[str, float] = Field(default_factory=dict)
    samplings: dict[str, Sampling] = Field(default_factory=dict)
    size: int | str = 0
    tags: list[str] = Field(default_factory=list, min_length=0, max_length=2)

    @model_validator(mode="after")
    def _disjoint(self) -> Build:
        if len(self.inputs) > 1 and self.inputs[0].offset == self.inputs[1].offset:
            raise ValueError("inputs.1: overlaps inputs.0")
        if self.name == "whole":
            raise ValueError("the build as a whole is wrong")
        if self.name == "labelled":
            raise ValueError("Note: not a path")
        return self


def _report(data: Any, model: type[BaseModel] = Build) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return format_validation_error(caught.value, "build.yaml", data, model)


def _yaml(text: str) -> str:
    return _report(yaml.safe_load(text))


def test_unknown_fields_suggest_or_list() -> None:
    assert _report({"name": "b", "wrokers": 2, "zzz": 1, "inputs": [{"ofset": 1}]}) == (
        "build.yaml: 3 problem(s) in the configuration\n"
        "  inputs.0.ofset: is not a known field; did you mean 'offset'?\n"
        "  wrokers: is not a known field; did you mean 'workers'?\n"
        "  zzz: is not a known field; allowed: name, seed, workers, inputs, annotate, single, params, "
        "samplings, size, tags"
    )


def test_unknown_field_in_a_union_member_uses_that_member() -> None:
    data = {
        "name": "b",
        "annotate": [
            {"kind": "mc", "nn": 3},
            {"kind": "equations", "nn": 3},
            {"kind": "mc", "sampling": {"t": 1}},
        ],
        "single": {"kind": "equations", "mdoe": "strict"},
        "samplings": {"hot": {"temprature": 1.0}},
    }
    assert _report(data) == (
        "build.yaml: 5 problem(s) in the configuration\n"
        "  annotate.0.nn: is not a known field; did you mean 'n'?\n"
        "  annotate.1.nn: is not a known field; allowed: kind, mode, switch\n"
        "  annotate.2.sampling.t: is not a known field; allowed: temperature, top_p\n"
        "  single.mdoe: is not a known field; did you mean 'mode'?\n"
        "  samplings.hot.temprature: is not a known field; did you mean 'temperature'?"
    )


def test_at_most_twelve_allowed_fields_are_listed() -> None:
    wide = type(
        "Wide",
        (_Strict,),
        {
            "__annotations__": {f"field_{i:02d}": int for i in range(15)},
            **{f"field_{i:02d}": 0 for i in range(15)},
        },
    )
    assert _report({"zzz": 1}, wide) == (
        "build.yaml: 1 problem(s) in the configuration\n"
        "  zzz: is not a known field; allowed: field_00, field_01, field_02, field_03, field_04, field_05, "
        "field_06, field_07, field_08, field_09, field_10, field_11, ... (3 more)"
    )


def test_kinds() -> None:
    data = {
        "name": "b",
        "annotate": [{"kind": "equatoins"}, {"n": 3}, {"kind": "zzz"}, {"kind": 3}, "mc"],
        "single": {"kind": "steps"},
    }
    assert _report(data) == (
        "build.yaml: 6 problem(s) in the configuration\n"
        "  annotate.0: unknown kind 'equatoins'; allowed: mc, equations, steps; did you mean 'equations'?\n"
        "  annotate.1: needs a 'kind' (one of mc, equations, steps)\n"
        "  annotate.2: unknown kind 'zzz'; allowed: mc, equations, steps\n"
        "  annotate.3: unknown kind 3; allowed: mc, equations, steps\n"
        "  annotate.4: must be a mapping (got 'mc')\n"
        "  single: unknown kind 'steps'; allowed: mc, equations"
    )


def test_a_kind_read_as_a_yaml_boolean() -> None:
    assert _yaml("name: b\nannotate: [{kind: on}]\n") == (
        "build.yaml: 1 problem(s) in the configuration\n"
        "  annotate.0: unknown kind: got the YAML boolean true (from on/yes/true?); "
        "allowed: mc, equations, steps"
    )


def test_literals_and_enums() -> None:
    data = {
        "name": "b",
        "annotate": [{"kind": "equations", "mode": "strcit"}, {"kind": "mc", "color": "bleu"}],
        "single": {"kind": "equations", "mode": "x"},
    }
    assert _report(data) == (
        "build.yaml: 3 problem(s) in the configuration\n"
        "  annotate.0.mode: must be one of 'strict', 'loose' (got 'strcit'); did you mean 'strict'?\n"
        "  annotate.1.color: must be one of 'red', 'blue' (got 'bleu'); did you mean 'blue'?\n"
        "  single.mode: must be one of 'strict', 'loose' (got 'x')"
    )


def test_yaml_booleans_where_strings_belong() -> None:
    text = """
name: off
annotate:
  - {kind: equations, switch: off, mode: yes}
  - {kind: equations, switch: on}
inputs:
  - {path: no}
"""
    assert _yaml(text) == (
        "build.yaml: 5 problem(s) in the configuration\n"
        "  name: must be a string; got the YAML boolean false (from off/no/false?); quote it: 'off'\n"
        "  inputs.0.path: must be a path; got the YAML boolean false (from off/no/false?); quote it: 'off'\n"
        "  annotate.0.mode: must be one of 'strict', 'loose'; got the YAML boolean true (from on/yes/true?)\n"
        "  annotate.0.switch: must be one of 'on', 'off', 'auto'; got the YAML boolean false "
        "(from off/no/false?); quote it: 'off'\n"
        "  annotate.1.switch: must be one of 'on', 'off', 'auto'; got the YAML boolean true "
        "(from on/yes/true?); quote it: 'on'"
    )


def test_model_validators() -> None:
    base = {"name": "b", "inputs": [{"offset": 1}, {"offset": 1}]}
    assert _report(base) == ("build.yaml: 1 problem(s) in the configuration\n  inputs.1: overlaps inputs.0")
    assert _report({"name": "whole"}) == (
        "build.yaml: 1 problem(s) in the configuration\n  (config): the build as a whole is wrong"
    )
    assert _report({"name": "labelled"}) == (
        "build.yaml: 1 problem(s) in the configuration\n  (config): Note: not a path"
    )
    data = {
        "name": " ",
        "annotate": [{"kind": "steps", "min_steps": 3, "max_steps": 2}, {"kind": "steps", "min_steps": 0}],
    }
    assert _report(data) == (
        "build.yaml: 3 problem(s) in the configuration\n"
        "  name: must not be blank\n"
        "  annotate.0: max_steps (2) must be >= min_steps (3)\n"
        "  annotate.1.min_steps: 0 needs max_steps <= 1"
    )


def test_numbers_and_required() -> None:
    data = {
        "workers": 0,
        "inputs": [{"offset": -1}],
        "annotate": [{"kind": "mc", "n": 0, "sampling": {"temperature": -0.5, "top_p": 0}}],
        "tags": ["a", "b", "c"],
    }
    assert _report(data) == (
        "build.yaml: 7 problem(s) in the configuration\n"
        "  name: is required\n"
        "  workers: must be >= 1 (got 0)\n"
        "  inputs.0.offset: must be >= 0 (got -1)\n"
        "  annotate.0.n: must be >= 1 (got 0)\n"
        "  annotate.0.sampling.temperature: must be >= 0 (got -0.5)\n"
        "  annotate.0.sampling.top_p: must be > 0 (got 0)\n"
        "  tags: must have at most 2 items (got 3)"
    )


def test_types_in_plain_words() -> None:
    data = {
        "name": 3,
        "seed": "abc",
        "workers": 1.5,
        "inputs": {"offset": 1},
        "annotate": "mc",
        "single": [1],
        "params": {"a": "x", "b": None},
        "samplings": [],
        "size": [1],
    }
    assert _report(data) == (
        "build.yaml: 10 problem(s) in the configuration\n"
        "  name: must be a string (got 3)\n"
        "  seed: must be an integer (got 'abc')\n"
        "  workers: must be an integer (got 1.5)\n"
        "  inputs: must be a list (got a mapping)\n"
        "  annotate: must be a list (got 'mc')\n"
        "  single: must be a mapping (got a list)\n"
        "  params.a: must be a number (got 'x')\n"
        "  params.b: must be a number (got null)\n"
        "  samplings: must be a mapping (got a list)\n"
        "  size: must be an integer or a string (got a list)"
    )


def test_not_a_mapping_at_all() -> None:
    assert _report([1, 2]) == (
        "build.yaml: 1 problem(s) in the configuration\n  (config): must be a mapping (got a list)"
    )


class _Plain(_Strict):
    """A union without a discriminator: pydantic labels each member's errors with its class name."""

    item: MonteCarlo | int = 0
    either: Equations | MonteCarlo | None = None


def test_plain_unions_report_the_member_that_fits() -> None:
    data = {"item": {"kind": "mc", "nn": 1}, "either": {"kind": "equations", "mode": "x"}}
    assert _report(data, _Plain) == (
        "build.yaml: 2 problem(s) in the configuration\n"
        "  item.nn: is not a known field; did you mean 'n'?\n"
        "  either.mode: must be one of 'strict', 'loose' (got 'x')"
    )


def test_no_internals_leak() -> None:
    data = {
        "name": False,
        "annotate": [{"kind": "mc", "zz": 1}, {"kind": "x"}, {}],
        "single": 3,
        "size": None,
        "inputs": [{"path": 3}],
    }
    report = _report(data)
    for internal in (
        "MonteCarlo",
        "Equations",
        "function-after",
        "pydantic",
        "http",
        "<root>",
        "Input should",
    ):
        assert internal not in report
    assert _report({"item": {"kind": "mc", "n": 0}, "either": 3}, _Plain) == (
        "build.yaml: 2 problem(s) in the configuration\n"
        "  item.n: must be >= 1 (got 0)\n"
        "  either: must be a mapping (got 3)"
    )
