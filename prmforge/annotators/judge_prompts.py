"""The LLM judge's prompts (METHODS.md §2(d)): default templates, their placeholders, and rendering.

Two templates, both plain strings a configuration may replace:

- the *critique* template (:data:`CRITIQUE_TEMPLATE`, after ProcessBench's critique prompt, in our
  own words): the problem and every step, each wrapped in ``<paragraph_i>…</paragraph_i>`` tags, and
  a request for the index of the earliest wrong paragraph in ``\\boxed{}`` (``-1`` when all are right);
- the *per-step* template (:data:`STEP_TEMPLATE`): the problem, the steps before step k and step k,
  and a request for ``\\boxed{correct}`` or ``\\boxed{incorrect}``.

Placeholders are ``{name}``: an identifier in braces that no letter, digit, ``_``, ``\\``, ``}`` or ``^``
precedes, so LaTeX such as ``\\boxed{correct}``, ``x_{i}`` or ``\\frac{a}{b}`` stays literal text;
``{{name}}`` writes a literal ``{name}``. Any other brace is literal. A template naming an unknown
placeholder, or missing a required one, is refused with a :class:`ValueError` naming the field.

=============== =========================================================== ==========
placeholder     value                                                       required
=============== =========================================================== ==========
problem         the problem's question                                      both
tagged_steps    every step as ``<paragraph_i>\\nstep\\n</paragraph_i>``      critique
first_index     the first paragraph's index (the index base: 0 or 1)        no
last_index      the last paragraph's index                                  no
step            the step being judged                                       per-step
step_index      its index (in the index base)                               no
previous_steps  the steps before it, tagged; :data:`NO_PREVIOUS_STEPS` if   no
                it is the first
=============== =========================================================== ==========

Indices are 0-based by default, as the default critique template says; a user template that
numbers from 1 sets the judge's ``index_base`` to 1, and tags and indices then start at 1
(``-1`` still means "no wrong paragraph").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "CRITIQUE_PLACEHOLDERS",
    "CRITIQUE_TEMPLATE",
    "NO_PREVIOUS_STEPS",
    "STEP_PLACEHOLDERS",
    "STEP_TEMPLATE",
    "TemplateKind",
    "placeholders",
    "render_critique",
    "render_step",
    "render_template",
    "tag_steps",
    "validate_template",
]

TemplateKind = Literal["critique", "step"]

CRITIQUE_TEMPLATE = """\
Below are a problem and a proposed step-by-step solution. The solution is split into paragraphs; \
each paragraph is wrapped in numbered tags such as <paragraph_i> and </paragraph_i>, numbered from \
{first_index}.

[Problem]
{problem}

[Solution]
{tagged_steps}

Check the paragraphs in order and find the EARLIEST paragraph that contains a mistake: a wrong \
calculation, a false statement, a misreading of the problem, or a conclusion that does not follow \
from what came before. Once you find it, later paragraphs do not matter.

End your answer with the index of that paragraph inside \\boxed{}; indices run from {first_index} \
to {last_index}. If every paragraph is correct, end with \\boxed{-1}.
"""
"""The default critique prompt (0-based unless the judge's ``index_base`` is 1)."""

STEP_TEMPLATE = """\
Below are a problem, the steps of a solution written so far, and the next step. Judge ONLY the \
next step: is it correct, given the problem and the steps before it? A step is incorrect if it \
contains a wrong calculation, a false statement, or a conclusion that does not follow from the \
problem and the previous steps.

[Problem]
{problem}

[Previous steps]
{previous_steps}

[Step {step_index}]
{step}

End your answer with \\boxed{correct} if the step is correct, or \\boxed{incorrect} if it is not.
"""
"""The default per-step prompt."""

NO_PREVIOUS_STEPS = "(none: this is the first step)"
"""What ``{previous_steps}`` renders to for the first step."""

CRITIQUE_PLACEHOLDERS: Mapping[str, bool] = {
    "problem": True,
    "tagged_steps": True,
    "first_index": False,
    "last_index": False,
}
"""The critique template's placeholders, each mapped to whether it is required."""

STEP_PLACEHOLDERS: Mapping[str, bool] = {
    "problem": True,
    "step": True,
    "step_index": False,
    "previous_steps": False,
}
"""The per-step template's placeholders, each mapped to whether it is required."""

_PLACEHOLDERS = {"critique": CRITIQUE_PLACEHOLDERS, "step": STEP_PLACEHOLDERS}

# An escaped {{name}} (group 1), or a placeholder {name} (group 2) that no letter, digit, "_",
# "\", "}" or "^" precedes.
_TOKEN = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|(?<![\w\\}^])\{([A-Za-z_]\w*)\}")


def placeholders(template: str) -> list[str]:
    """The placeholders ``template`` names, in order of first appearance (escaped ones excluded).

    >>> placeholders("{problem} \\\\boxed{correct} {{step}} {step} {problem}")
    ['problem', 'step']
    """
    found: list[str] = []
    for match in _TOKEN.finditer(template):
        name = match.group(2)
        if name is not None and name not in found:
            found.append(name)
    return found


def validate_template(template: str, field: str, kind: TemplateKind) -> str:
    """``template`` itself, if it names only known placeholders and every required one.

    Raises :class:`ValueError` starting with ``field`` (e.g. ``critique_template``) otherwise.
    """
    allowed = _PLACEHOLDERS[kind]
    names = placeholders(template)
    listing = ", ".join(f"{{{n}}}" + (" (required)" if required else "") for n, required in allowed.items())
    for name in names:
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            raise ValueError(
                f"{field}: unknown placeholder {{{name}}}{hint}; the {kind} template's placeholders are "
                f"{listing}; write {{{{{name}}}}} for a literal {{{name}}}"
            )
    missing = [n for n, required in allowed.items() if required and n not in names]
    if missing:
        absent = ", ".join(f"{{{n}}}" for n in missing)
        raise ValueError(
            f"{field}: the {kind} template must contain {absent}; its placeholders are {listing}"
        )
    return template


def render_template(template: str, values: Mapping[str, str], field: str, kind: TemplateKind) -> str:
    """``template`` with every placeholder replaced by its value (validated first, see the module)."""
    validate_template(template, field, kind)

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "{" + match.group(1) + "}"
        return values[match.group(2)]

    return _TOKEN.sub(replace, template)


def tag_steps(steps: Sequence[str], index_base: int = 0) -> str:
    """Each step wrapped in its ``<paragraph_i>`` tags (numbered from ``index_base``), blank-line separated.

    >>> print(tag_steps(["a", "b"]))
    <paragraph_0>
    a
    </paragraph_0>
    <BLANKLINE>
    <paragraph_1>
    b
    </paragraph_1>
    """
    return "\n\n".join(
        f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(steps, start=index_base)
    )


def render_critique(
    template: str,
    question: str,
    steps: Sequence[str],
    *,
    index_base: int = 0,
    field: str = "critique_template",
) -> str:
    """The critique prompt for a solution of ``steps`` (at least one) to ``question``."""
    if not steps:
        raise ValueError("a critique needs at least one step")
    values = {
        "problem": question,
        "tagged_steps": tag_steps(steps, index_base),
        "first_index": str(index_base),
        "last_index": str(index_base + len(steps) - 1),
    }
    return render_template(template, values, field, "critique")


def render_step(
    template: str,
    question: str,
    steps: Sequence[str],
    step: int,
    *,
    index_base: int = 0,
    field: str = "step_template",
) -> str:
    """The per-step prompt judging ``steps[step]`` after ``steps[:step]``."""
    if not 0 <= step < len(steps):
        raise ValueError(f"step {step} is not an index of the {len(steps)} steps")
    values = {
        "problem": question,
        "step": steps[step],
        "step_index": str(index_base + step),
        "previous_steps": tag_steps(steps[:step], index_base) if step else NO_PREVIOUS_STEPS,
    }
    return render_template(template, values, field, "step")
