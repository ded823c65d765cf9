"""The judge's prompts: placeholders found, validated (naming the field), and rendered exactly."""

from __future__ import annotations

import doctest

import pytest

from prmforge.annotators import judge_prompts
from prmforge.annotators.judge_prompts import (
    CRITIQUE_TEMPLATE,
    NO_PREVIOUS_STEPS,
    STEP_TEMPLATE,
    placeholders,
    render_critique,
    render_step,
    tag_steps,
    validate_template,
)


def test_doctests() -> None:
    assert doctest.testmod(judge_prompts).failed == 0


@pytest.mark.parametrize(
    ("template", "names"),
    [
        ("{problem}\n{tagged_steps}", ["problem", "tagged_steps"]),
        (r"\boxed{correct} or \boxed{-1}", []),
        (r"x_{i} + y^{n} = \frac{a}{b}", []),
        ("{{problem}} is literal, {problem} is not", ["problem"]),
        ('JSON like {"first_error": 2} is literal text', []),
        ("[Step {step_index}] {step} {step}", ["step_index", "step"]),
        ("word{problem}", []),
    ],
)
def test_placeholders(template: str, names: list[str]) -> None:
    assert placeholders(template) == names


def test_the_default_templates_are_valid() -> None:
    assert placeholders(CRITIQUE_TEMPLATE) == ["first_index", "problem", "tagged_steps", "last_index"]
    assert placeholders(STEP_TEMPLATE) == ["problem", "previous_steps", "step_index", "step"]
    assert validate_template(CRITIQUE_TEMPLATE, "critique_template", "critique") == CRITIQUE_TEMPLATE
    assert validate_template(STEP_TEMPLATE, "step_template", "step") == STEP_TEMPLATE


@pytest.mark.parametrize(
    ("template", "kind", "message"),
    [
        (
            "{problme} {tagged_steps}",
            "critique",
            "critique_template: unknown placeholder {problme} (did you mean {problem}?); the critique "
            "template's placeholders are {problem} (required), {tagged_steps} (required), {first_index}, "
            "{last_index}; write {{problme}} for a literal {problme}",
        ),
        (
            "{problem} {tagged_steps} {answer}",
            "critique",
            "critique_template: unknown placeholder {answer}; the critique template's placeholders are "
            "{problem} (required), {tagged_steps} (required), {first_index}, {last_index}; write "
            "{{answer}} for a literal {answer}",
        ),
        (
            "{problem} only",
            "critique",
            "critique_template: the critique template must contain {tagged_steps}; its placeholders are "
            "{problem} (required), {tagged_steps} (required), {first_index}, {last_index}",
        ),
        (
            "{problem} {tagged_steps}",
            "step",
            "step_template: unknown placeholder {tagged_steps}; the step template's placeholders are "
            "{problem} (required), {step} (required), {step_index}, {previous_steps}; write "
            "{{tagged_steps}} for a literal {tagged_steps}",
        ),
        (
            "nothing",
            "step",
            "step_template: the step template must contain {problem}, {step}; its placeholders are "
            "{problem} (required), {step} (required), {step_index}, {previous_steps}",
        ),
    ],
)
def test_invalid_templates_name_the_field(
    template: str, kind: judge_prompts.TemplateKind, message: str
) -> None:
    field = "critique_template" if kind == "critique" else "step_template"
    with pytest.raises(ValueError, match=f"^{field}: ") as err:
        validate_template(template, field, kind)
    assert str(err.value) == message


def test_tag_steps() -> None:
    assert tag_steps(["a", "b"]) == "<paragraph_0>\na\n</paragraph_0>\n\n<paragraph_1>\nb\n</paragraph_1>"
    assert tag_steps(["a"], index_base=1) == "<paragraph_1>\na\n</paragraph_1>"
    assert tag_steps([]) == ""


def test_render_a_user_critique_template_exactly() -> None:
    template = r"Q: {problem}|{tagged_steps}|{first_index}..{last_index}|\boxed{} {{problem}}"
    assert render_critique(template, "1+1?", ["1+1=2", "so {2}"]) == (
        "Q: 1+1?|<paragraph_0>\n1+1=2\n</paragraph_0>\n\n<paragraph_1>\nso {2}\n</paragraph_1>|0..1|"
        r"\boxed{} {problem}"
    )
    assert render_critique("{problem} {tagged_steps} {last_index}", "q", ["a", "b"], index_base=1) == (
        "q <paragraph_1>\na\n</paragraph_1>\n\n<paragraph_2>\nb\n</paragraph_2> 2"
    )


def test_values_are_not_read_as_templates() -> None:
    """A question that itself contains {tagged_steps} is inserted as text, not expanded."""
    assert render_critique("{problem}/{tagged_steps}", "say {tagged_steps}", ["s"]) == (
        "say {tagged_steps}/<paragraph_0>\ns\n</paragraph_0>"
    )


def test_the_default_critique_prompt() -> None:
    prompt = render_critique(CRITIQUE_TEMPLATE, "What is 1+1?", ["1+1=2.", "So 2."])
    assert prompt.startswith("Below are a problem and a proposed step-by-step solution.")
    assert (
        "numbered from 0.\n\n[Problem]\nWhat is 1+1?\n\n[Solution]\n<paragraph_0>\n1+1=2.\n</paragraph_0>\n\n"
        in prompt
    )
    assert "<paragraph_1>\nSo 2.\n</paragraph_1>\n\nCheck the paragraphs in order" in prompt
    assert prompt.endswith(
        "End your answer with the index of that paragraph inside \\boxed{}; indices run from 0 to 1. "
        "If every paragraph is correct, end with \\boxed{-1}.\n"
    )
    assert "{" not in prompt.replace("\\boxed{", "")


def test_the_default_step_prompt() -> None:
    steps = ["1+1=2.", "So 2.", "Done."]
    second = render_step(STEP_TEMPLATE, "What is 1+1?", steps, 1)
    assert (
        "[Problem]\nWhat is 1+1?\n\n[Previous steps]\n<paragraph_0>\n1+1=2.\n</paragraph_0>\n\n"
        "[Step 1]\nSo 2.\n\n" in second
    )
    assert second.endswith(
        "End your answer with \\boxed{correct} if the step is correct, or \\boxed{incorrect} if it is not.\n"
    )
    first = render_step(STEP_TEMPLATE, "What is 1+1?", steps, 0)
    assert f"[Previous steps]\n{NO_PREVIOUS_STEPS}\n\n[Step 0]\n1+1=2.\n" in first
    one_based = render_step(STEP_TEMPLATE, "q", steps, 2, index_base=1)
    assert (
        "<paragraph_1>\n1+1=2.\n</paragraph_1>\n\n<paragraph_2>\nSo 2.\n</paragraph_2>\n\n[Step 3]\nDone."
        in one_based
    )


def test_render_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="a critique needs at least one step"):
        render_critique(CRITIQUE_TEMPLATE, "q", [])
    with pytest.raises(ValueError, match="step 2 is not an index of the 2 steps"):
        render_step(STEP_TEMPLATE, "q", ["a", "b"], 2)
    with pytest.raises(ValueError, match=r"^my_field: the critique template must contain"):
        render_critique("{problem}", "q", ["a"], field="my_field")
