"""The import layers of ``prmforge`` (docs/architecture.md), checked on the source with ``ast``.

Nothing is imported: every module under ``prmforge/`` is parsed and every
``import`` / ``from ... import`` of ours is collected, wherever it stands (module
level, inside a function, under ``if TYPE_CHECKING:``), with relative imports
resolved. ``from pkg import name`` counts as an import of ``pkg.name`` when that
is a module of ours, else of ``pkg``. Imports by string (``importlib``) are not
seen.

| layer | may import (of ours) |
|---|---|
| schemas | schemas |
| languages | schemas, languages |
| verifiers | schemas, languages, verifiers |
| suites | schemas, languages, suites |
| policies | schemas, languages, suites, policies |
| inputs | schemas, languages, suites, verifiers, inputs |
| annotators | anything but pipelines, runners, cli |
| any module | a CLI module only if it is a CLI module itself |
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "prmforge"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / ROOT
CLI_MODULES = frozenset(
    {"prmforge.pipelines.cli", "prmforge.pipelines.cli_eval", "prmforge.verifiers.sandbox.cli"}
)
"""The command-line modules; any other module named ``cli``, ``cli_*`` or ``__main__`` counts as one too."""


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool


def discover(package_dir: Path = PACKAGE_DIR) -> dict[str, Module]:
    """Every module under ``package_dir`` by dotted name (a package by its ``__init__.py``)."""
    found: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [ROOT, *path.relative_to(package_dir).with_suffix("").parts]
        if "__pycache__" in parts:
            continue
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Module(name, path, is_package)
    return found


def _ours(name: str) -> bool:
    return name == ROOT or name.startswith(ROOT + ".")


def imports_of(source: str, module: str, *, is_package: bool, known: Iterable[str]) -> set[str]:
    """The modules of ours that ``source`` (the text of ``module``) imports, anywhere in it."""
    known_modules = set(known)
    own_package = module.split(".") if is_package else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package[: len(own_package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known_modules
            if len(submodules) < len(node.names):  # some name is an attribute of ``target``
                out.add(target)
            out.update(submodules)
    return {name for name in out if _ours(name)}


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Each module's imports of ours."""
    return {
        name: imports_of(m.path.read_text(encoding="utf-8"), name, is_package=m.is_package, known=modules)
        for name, m in modules.items()
    }


def within(module: str, package: str) -> bool:
    """Whether ``module`` is ``package`` or inside it (``package`` without the ``prmforge.`` prefix)."""
    full = f"{ROOT}.{package}"
    return module == full or module.startswith(full + ".")


def is_cli(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module in CLI_MODULES or last in {"cli", "__main__"} or last.startswith("cli_")


def layer_violations(
    graph: Mapping[str, set[str]], layer: str, allowed: Iterable[str]
) -> list[tuple[str, str]]:
    """(module, import) pairs where a module of ``layer`` imports something of ours outside ``allowed``."""
    permitted = tuple(allowed)
    return sorted(
        (module, imported)
        for module, imports in graph.items()
        if within(module, layer)
        for imported in imports
        if not any(within(imported, p) for p in permitted)
    )


def forbidden_violations(
    graph: Mapping[str, set[str]], layer: str, forbidden: Iterable[str]
) -> list[tuple[str, str]]:
    """(module, import) pairs where a module of ``layer`` imports something inside ``forbidden``."""
    banned = tuple(forbidden)
    return sorted(
        (module, imported)
        for module, imports in graph.items()
        if within(module, layer)
        for imported in imports
        if any(within(imported, p) for p in banned)
    )


def cli_violations(graph: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """(module, import) pairs where a module that is not a CLI module imports one."""
    return sorted(
        (module, imported)
        for module, imports in graph.items()
        if not is_cli(module)
        for imported in imports
        if is_cli(imported)
    )


def _message(rule: str, pairs: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"  {module} imports {imported}" for module, imported in pairs)
    return f"{rule}; {len(pairs)} violation(s):\n{lines}"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(discover())


def _assert_layer(graph: Mapping[str, set[str]], layer: str, allowed: tuple[str, ...]) -> None:
    pairs = layer_violations(graph, layer, allowed)
    rule = f"prmforge.{layer} may import only " + ", ".join(f"prmforge.{p}" for p in allowed)
    assert not pairs, _message(rule, pairs)


def test_the_scan_sees_every_layer(graph: dict[str, set[str]]) -> None:
    """A wrong path would make every rule pass vacuously."""
    for layer in ("schemas", "languages", "verifiers", "suites", "policies", "annotators", "pipelines"):
        assert any(within(m, layer) for m in graph), f"no module found in prmforge.{layer}"
    assert "prmforge.verifiers.sandbox.cli" in graph
    assert "prmforge.languages.formula" in graph["prmforge.verifiers.z3_entailment"]


def test_schemas_import_only_schemas(graph: dict[str, set[str]]) -> None:
    _assert_layer(graph, "schemas", ("schemas",))


def test_languages_import_only_schemas_and_languages(graph: dict[str, set[str]]) -> None:
    _assert_layer(graph, "languages", ("schemas", "languages"))


def test_verifiers_import_no_suite_annotator_policy_or_pipeline(graph: dict[str, set[str]]) -> None:
    _assert_layer(graph, "verifiers", ("schemas", "languages", "verifiers"))


def test_suites_import_no_verifier(graph: dict[str, set[str]]) -> None:
    _assert_layer(graph, "suites", ("schemas", "languages", "suites"))


def test_policies_import_only_schemas_languages_suites(graph: dict[str, set[str]]) -> None:
    """The built-in simulated and scripted policies use the suites' generators."""
    _assert_layer(graph, "policies", ("schemas", "languages", "suites", "policies"))


def test_inputs_import_below_annotators(graph: dict[str, set[str]]) -> None:
    if not any(within(m, "inputs") for m in graph):
        pytest.skip("prmforge.inputs does not exist yet")
    _assert_layer(graph, "inputs", ("schemas", "languages", "suites", "verifiers", "inputs"))


def test_annotators_never_import_pipelines(graph: dict[str, set[str]]) -> None:
    forbidden = ("pipelines", "runners", "cli")
    pairs = forbidden_violations(graph, "annotators", forbidden)
    rule = "prmforge.annotators must not import " + ", ".join(f"prmforge.{p}" for p in forbidden)
    assert not pairs, _message(rule, pairs)


@pytest.mark.parametrize("top", ["ops", "reporting"])
def test_the_operations_layers_are_imported_only_by_themselves_and_the_cli(
    graph: dict[str, set[str]], top: str
) -> None:
    """The registry, scheduler, report and Hub export sit above the pipeline: nothing below uses them."""
    pairs = sorted(
        (module, imported)
        for module, imports in graph.items()
        if not within(module, top) and not is_cli(module)
        for imported in imports
        if within(imported, top)
    )
    assert not pairs, _message(f"only prmforge.{top} and CLI modules may import prmforge.{top}", pairs)


def test_training_is_imported_below_the_pipeline_only_through_its_scoring(graph: dict[str, set[str]]) -> None:
    """The PRM annotator scores with a trained model; nothing else below the pipeline needs training."""
    pairs = [
        (module, imported)
        for module, imports in sorted(graph.items())
        if not within(module, "training") and not is_cli(module) and not within(module, "pipelines")
        for imported in sorted(imports)
        if within(imported, "training") and imported != "prmforge.training.scoring"
    ]
    assert not pairs, _message("below the pipeline only prmforge.training.scoring may be imported", pairs)


def test_nothing_imports_the_cli(graph: dict[str, set[str]]) -> None:
    pairs = cli_violations(graph)
    assert not pairs, _message(f"only CLI modules may import a CLI module ({sorted(CLI_MODULES)})", pairs)


# ------------------------------------------------------------------ the checker itself

_HOSTILE = """
from __future__ import annotations
from typing import TYPE_CHECKING
import os
from prmforge.schemas.records import Problem
from .verdict import Check
if TYPE_CHECKING:
    from prmforge.suites.code import generate_code_problems

def late() -> None:
    import prmforge.annotators.mc
    from ..pipelines import cli
    from .. import policies
"""


def test_the_checker_reports_deferred_relative_and_type_checking_imports() -> None:
    known = {"prmforge.pipelines.cli", "prmforge.policies", "prmforge.verifiers.verdict"}
    found = imports_of(_HOSTILE, "prmforge.verifiers.fake", is_package=False, known=known)
    assert found == {
        "prmforge.schemas.records",
        "prmforge.verifiers.verdict",
        "prmforge.suites.code",
        "prmforge.annotators.mc",
        "prmforge.pipelines.cli",
        "prmforge.policies",
    }
    graph = {"prmforge.verifiers.fake": found}
    assert layer_violations(graph, "verifiers", ("schemas", "languages", "verifiers")) == [
        ("prmforge.verifiers.fake", "prmforge.annotators.mc"),
        ("prmforge.verifiers.fake", "prmforge.pipelines.cli"),
        ("prmforge.verifiers.fake", "prmforge.policies"),
        ("prmforge.verifiers.fake", "prmforge.suites.code"),
    ]
    assert cli_violations(graph) == [("prmforge.verifiers.fake", "prmforge.pipelines.cli")]
    with pytest.raises(AssertionError, match=r"prmforge\.verifiers\.fake imports prmforge\.suites\.code"):
        _assert_layer(graph, "verifiers", ("schemas", "languages", "verifiers"))


def test_relative_imports_resolve_from_a_package_init() -> None:
    source = "from . import codec\nfrom .limits import SandboxLimits\nfrom ... import schemas\n"
    known = {"prmforge.verifiers.sandbox.codec", "prmforge.schemas"}
    found = imports_of(source, "prmforge.verifiers.sandbox", is_package=True, known=known)
    assert found == {
        "prmforge.verifiers.sandbox.codec",
        "prmforge.verifiers.sandbox.limits",
        "prmforge.schemas",
    }


def test_a_cli_module_may_import_another_and_nothing_else_may() -> None:
    graph = {
        "prmforge.pipelines.cli": {"prmforge.verifiers.sandbox.cli", "prmforge.pipelines.cli_eval"},
        "prmforge.pipelines.local": {"prmforge.pipelines.cli_eval"},
    }
    assert cli_violations(graph) == [("prmforge.pipelines.local", "prmforge.pipelines.cli_eval")]
