"""OmegaPRM beside Monte Carlo in one build: labels against truth, cost, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import committed, small_config

from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.schemas.records import Rollout, StepLabels

SIDE_BY_SIDE = [{"kind": "omegaprm", "k": 4, "search_limit": 0}, {"kind": "mc", "n": 4}]


def _config() -> object:
    return small_config(
        inputs=[{"kind": "arith", "count": 12, "min_steps": 6, "max_steps": 8}],
        annotate=SIDE_BY_SIDE,
        fuse={"rule": "single", "source": "omegaprm"},
    )


def test_omegaprm_and_mc_label_the_same_rollouts_and_omegaprm_spends_less(tmp_path: Path) -> None:
    first = LocalRunner().run(_config(), tmp_path / "a")
    rollouts: list[Rollout] = committed(tmp_path / "a", "stages/generate/", "rollout")
    omega: list[StepLabels] = committed(tmp_path / "a", "stages/annotate-omegaprm/", "labels")
    mc: list[StepLabels] = committed(tmp_path / "a", "stages/annotate-mc/", "labels")
    assert (
        [lab.rollout_id for lab in omega]
        == [r.rollout_id for r in rollouts]
        == [lab.rollout_id for lab in mc]
    )
    for rollout, lab in zip(rollouts, omega, strict=True):
        assert len(lab.hard) == len(rollout.steps)
        if rollout.outcome is True:
            assert lab.first_error == -1  # a right rollout is not searched
    spent = {s: summarize(tmp_path / "a")["cost_by_source"][s]["completions"] for s in ("omegaprm", "mc")}
    assert 0 < spent["omegaprm"] < spent["mc"] / 2
    again = LocalRunner().run(_config(), tmp_path / "b")
    assert again.content_hash == first.content_hash
    card = (tmp_path / "a" / "README.md").read_text()
    assert "OmegaPRM" in card


def test_every_questions_search_tree_is_committed_as_its_own_table(tmp_path: Path) -> None:
    from prmforge.annotators.search_tree import trees_from_rows
    from prmforge.pipelines.runners.manifest import Manifest

    LocalRunner().run(_config(), tmp_path / "b")
    files = Manifest.read(tmp_path / "b").under("trees/annotate-omegaprm/")
    assert len(files) == 3  # one per shard (12 problems, shard size 5)
    trees = trees_from_rows(committed(tmp_path / "b", "trees/annotate-omegaprm/", "tree"))
    omega: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-omegaprm/", "labels")
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert sorted(t.problem_id for t in trees) == sorted({r.problem_id for r in rollouts})
    by_problem = {t.problem_id: t for t in trees}
    for rollout, lab in zip(rollouts, omega, strict=True):
        tree = by_problem[rollout.problem_id]
        path = lab.meta["path_node_ids"]
        assert [tree.nodes[i].step for i in path] == list(rollout.steps[: len(path)])
        for t, node_id in enumerate(path):  # a value the search measured is the node's stored MC
            if lab.values[t] is not None and t < len(rollout.steps) - 1:
                assert tree.nodes[node_id].mc == lab.values[t]


def _searched(tmp_path: Path) -> Path:
    config = small_config(
        inputs=[{"kind": "arith", "count": 6, "min_steps": 6, "max_steps": 8}],
        annotate=[{"kind": "omegaprm", "k": 4, "search_limit": 12}],
        runner={"workers": 0, "shard_size": 3},
    )
    LocalRunner().run(config, tmp_path / "b")
    return tmp_path / "b"


def test_relabel_rederives_every_rule_from_the_stored_trees_alone(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from prmforge.annotators import tree_labels
    from prmforge.pipelines import tables
    from prmforge.pipelines.cli import app
    from prmforge.pipelines.trees import RULES, load_trees, relabel

    root = _searched(tmp_path)
    rollouts: list[Rollout] = committed(root, "stages/generate/", "rollout")
    searched: list[StepLabels] = committed(root, "stages/annotate-omegaprm/", "labels")
    trees = load_trees(root, "annotate-omegaprm")
    owner = {rid: tree for tree in trees.values() for rid in tree.rollout_ids}
    for rule in RULES:
        labels = relabel(root, rule)
        assert [lab.rollout_id for lab in labels] == [r.rollout_id for r in rollouts]
        assert all(len(lab.hard) == len(r.steps) for lab, r in zip(labels, rollouts, strict=True))
        assert {lab.source for lab in labels} == {f"omegaprm-{rule}"}
    for lab, original in zip(relabel(root, "mc"), searched, strict=True):
        path = original.meta["path_node_ids"]
        soft, hard = tree_labels.mc_labels(owner[lab.rollout_id], path)
        assert lab.values[: len(soft)] == soft
        assert lab.hard[: len(hard)] == hard
    out = tmp_path / "rest.parquet"
    result = CliRunner().invoke(app, ["relabel", str(root), "--rule", "rest", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert tables.decode("labels", pq.read_table(out)) == relabel(root, "rest")
    bad = CliRunner().invoke(app, ["relabel", str(root), "--rule", "best", "--output", str(out)])
    assert bad.exit_code == 2
    assert "choose one of mc, rest, hrm, genprm, pav" in bad.output


def test_pairs_are_sibling_steps_with_a_value_margin(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from prmforge.pipelines.cli import app
    from prmforge.pipelines.trees import mine_pairs

    root = _searched(tmp_path)
    rows = mine_pairs(root)
    assert rows  # the searched trees hold siblings that qualify
    assert rows == mine_pairs(root)  # deterministic
    for row in rows:
        assert row["chosen_value"] - row["rejected_value"] >= 0.5
        assert row["chosen"] != row["rejected"]
        assert row["prompt"].endswith("\n\n")
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(app, ["pairs", str(root), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert f"wrote {len(rows)} step preference pairs" in result.output


def test_a_build_without_a_search_annotator_has_no_trees_to_relabel(tmp_path: Path) -> None:
    from prmforge.pipelines.trees import relabel
    from prmforge.schemas.errors import BuildStateError

    LocalRunner().run(small_config(), tmp_path / "b")
    with pytest.raises(BuildStateError, match="no search trees are stored for annotate-omegaprm"):
        relabel(tmp_path / "b", "mc")
