"""Labels and preference pairs re-derived from a build's stored search trees, without generating again.

A search annotator (OmegaPRM) commits every question's tree as ``trees/<stage>/shard-*.parquet`` and
each rollout's path through it (``meta["path_node_ids"]`` of its labels). From those alone:

- :func:`relabel` gives one :class:`~prmforge.schemas.records.StepLabels` per rollout under a rule of
  :mod:`prmforge.annotators.tree_labels`: ``mc`` (soft MC, hard MC > 0), ``rest`` (ReST-MCTS* value
  targets; a step is good when its value does not fall, i.e. w >= 0), ``hrm`` (right leaves / leaves
  under the step; good when > 0), ``genprm`` (relative progress m_{t+1} / m_t >= epsilon) and ``pav``
  (progress Q - V; good when >= 0). A step the tree has no value for is None, and the first error is
  the first bad step with every earlier one good (None when an unknown step comes first).
- :func:`mine_pairs` gives rStar-Math step preference pairs (``prompt``, ``chosen``, ``rejected``,
  and the values that justified them) from every tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prmforge.annotators import tree_labels
from prmforge.annotators.search_tree import SearchTree, trees_from_rows
from prmforge.annotators.step_pairs import mine_step_pairs, pairs_to_rows
from prmforge.annotators.tool import first_error_from_hard
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.errors import BuildStateError
from prmforge.schemas.records import Cost, Problem, StepLabels

__all__ = ["RULES", "Rule", "load_trees", "mine_pairs", "relabel"]

Rule = Literal["mc", "rest", "hrm", "genprm", "pav"]
RULES: tuple[Rule, ...] = ("mc", "rest", "hrm", "genprm", "pav")


def _read(root: Path, prefix: str, kind: str) -> list[Any]:
    return Manifest.read(root).records(BuildDir(root), prefix, kind)


def load_trees(root: Path, stage: str) -> dict[str, SearchTree]:
    """The stored trees of ``stage`` (``annotate-omegaprm``), by problem id."""
    rows = _read(root, f"trees/{stage}/", "tree")
    if not rows:
        raise BuildStateError(f"{root}: no search trees are stored for {stage} (is it a search annotator?)")
    return {tree.problem_id: tree for tree in trees_from_rows(rows)}


def _rule_labels(
    tree: SearchTree, path: Sequence[int], rule: Rule, epsilon: float
) -> tuple[tuple[float | None, ...], tuple[bool | None, ...]]:
    if rule == "mc":
        return tree_labels.mc_labels(tree, path)
    if rule == "hrm":
        values = tree_labels.hrm_labels(tree, path)
        return values, tuple(None if v is None else v > 0 for v in values)
    if rule == "rest":
        values = tree_labels.rest_path_values(tree, path)
        previous: list[float | None] = [0.0, *values[:-1]]
        return values, tuple(
            None if v is None or p is None else v >= p for v, p in zip(values, previous, strict=True)
        )
    if rule == "genprm":
        hard = tree_labels.genprm_labels(tree, path, epsilon)
        return tree_labels.relative_progress(tree_labels.path_values(tree, path)), hard
    values = tree_labels.pav_progress(tree, path)
    return values, tuple(None if v is None else v >= 0 for v in values)


def relabel(
    root: Path, rule: Rule, *, stage: str = "annotate-omegaprm", epsilon: float = 0.8
) -> list[StepLabels]:
    """Per rollout the search labelled, its labels under ``rule`` (source ``<stage's source>-<rule>``)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    trees = load_trees(root, stage)
    owner = {rollout_id: tree for tree in trees.values() for rollout_id in tree.rollout_ids}
    labels: list[StepLabels] = _read(root, f"stages/{stage}/", "labels")
    out = []
    for lab in labels:
        path = lab.meta.get("path_node_ids")
        tree = owner.get(lab.rollout_id)
        steps = len(lab.hard)
        if not isinstance(path, list) or tree is None:
            reason = "no search tree or path for this rollout"
            out.append(_abstain(lab, rule, steps, reason))
            continue
        values, hard = _rule_labels(tree, path, rule, epsilon)
        pad = steps - len(values)
        values, hard = (*values[:steps], *(None,) * pad), (*hard[:steps], *(None,) * pad)
        out.append(
            StepLabels(
                source=f"{lab.source}-{rule}",
                rollout_id=lab.rollout_id,
                values=values,
                hard=hard,
                first_error=first_error_from_hard(hard),
                cost=Cost(),
                meta={"relabelled_from": lab.source, "rule": rule, "path_node_ids": list(path)},
            )
        )
    return out


def _abstain(lab: StepLabels, rule: Rule, steps: int, reason: str) -> StepLabels:
    return StepLabels(f"{lab.source}-{rule}", lab.rollout_id, (None,) * steps, (None,) * steps, None, Cost(),
                      {"abstained": reason, "rule": rule})  # fmt: skip


def mine_pairs(
    root: Path, *, stage: str = "annotate-omegaprm", margin: float = 0.5, min_edit_distance: int = 1
) -> list[dict[str, Any]]:
    """Step preference pairs of every stored tree, as rows (``prompt``, ``chosen``, ``rejected``, …)."""
    trees = load_trees(root, stage)
    problems: dict[str, Problem] = {p.problem_id: p for p in _read(root, "stages/load/", "problem")}
    rows: list[dict[str, Any]] = []
    for problem_id in sorted(trees):
        question = problems[problem_id].question if problem_id in problems else ""
        pairs = mine_step_pairs(
            trees[problem_id], question, margin=margin, min_edit_distance=min_edit_distance
        )
        rows.extend(pairs_to_rows(pairs))
    return rows
