"""The PRM annotator's scoring never reaches the pipelines, not even through another module."""

from __future__ import annotations

import pytest
from test_import_layers import discover, import_graph, within


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


@pytest.mark.parametrize(
    "start", ["prmforge.training.scoring", "prmforge.annotators.prm", "prmforge.annotators.prm_config"]
)
def test_nothing_the_prm_annotator_imports_reaches_the_pipelines(start: str) -> None:
    graph = import_graph(discover())
    reached = _reachable(graph, start)
    assert "prmforge.training.tokenize" in reached or start == "prmforge.annotators.prm_config"
    assert not [m for m in reached if within(m, "pipelines")], sorted(reached)


def test_only_the_build_reader_of_training_imports_the_pipelines() -> None:
    graph = import_graph(discover())
    importers = sorted(
        m
        for m, imports in graph.items()
        if within(m, "training") and any(within(i, "pipelines") for i in imports)
    )
    assert importers == ["prmforge.training.__main__", "prmforge.training.builds"]
