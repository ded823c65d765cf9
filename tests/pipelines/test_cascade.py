"""A cascade: Monte Carlo skips the rollouts in which the exact equation checker found the first error."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import committed, small_config

from prmforge.pipelines.runners.local import LocalRunner
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import StepLabels

CASCADE = [{"kind": "equations"}, {"kind": "mc", "n": 4, "defer_to": ["equations"]}]


def test_mc_leaves_to_the_equation_checker_what_it_decided_and_pays_nothing_there(tmp_path: Path) -> None:
    LocalRunner().run(small_config(annotate=CASCADE, fuse={"rule": "earliest"}), tmp_path / "c")
    eq: list[StepLabels] = committed(tmp_path / "c", "stages/annotate-equations/", "labels")
    mc: list[StepLabels] = committed(tmp_path / "c", "stages/annotate-mc/", "labels")
    decided = {lab.rollout_id: e for lab in eq if (e := lab.first_error) is not None and e >= 0}
    assert decided  # the checker finds the first error of some rollouts of the suite
    assert len(decided) < len(eq)
    for lab in mc:
        if lab.rollout_id in decided:
            assert lab.first_error is None
            assert lab.cost.completions == 0
            step = decided[lab.rollout_id]
            assert lab.meta["abstained"] == f"equations found the first error at step {step}; cascade"
        else:
            assert "abstained" not in lab.meta
    LocalRunner().run(small_config(annotate=[CASCADE[0], {"kind": "mc", "n": 4}], fuse={"rule": "earliest"}),
                      tmp_path / "full")  # fmt: skip
    full: list[StepLabels] = committed(tmp_path / "full", "stages/annotate-mc/", "labels")
    paid = sum(lab.cost.completions for lab in mc)
    assert paid == sum(lab.cost.completions for lab in full if lab.rollout_id not in decided)
    fused = committed(tmp_path / "c", "stages/fuse/", "fused")
    assert all(f.first_error == decided[f.rollout_id] for f in fused if f.rollout_id in decided)


@pytest.mark.parametrize(
    ("annotate", "message"),
    [
        ([{"kind": "mc", "defer_to": ["equations"]}], "'equations' is not an annotator"),
        (
            [{"kind": "mc", "defer_to": ["equations"]}, {"kind": "equations"}],
            "'equations' comes after it",
        ),
        ([{"kind": "mc", "defer_to": ["mc"]}], "'mc' comes after it"),
    ],
)
def test_a_cascade_defers_only_to_earlier_sources(annotate: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        small_config(annotate=annotate, fuse={"rule": "earliest"})
    assert f"defer_to: {message}" in str(info.value)
