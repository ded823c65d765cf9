"""A poisoned shard (one that killed or failed its worker on every attempt a runner allows) is
quarantined whole at load with the runner's reason; the rest of the build is reused, not recomputed."""

from __future__ import annotations

from pathlib import Path

from conftest import committed, small_config

from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.schemas.arrow import QuarantineEntry

REASON = "shard 1 killed its worker on 3 of 3 attempts (exit code -9)"


def test_a_poisoned_shard_is_quarantined_at_load_and_only_it_reruns(tmp_path: Path) -> None:
    config = small_config(runner={"workers": 0, "shard_size": 4})
    out = tmp_path / "b"
    clean = LocalRunner().run(config, out)
    assert clean.manifest.stages["load"].quarantined == 0
    BuildDir(out).record_poison(1, REASON)
    events = []
    poisoned = LocalRunner(on_event=events.append).run(config, out)
    rerun = sorted((e.shard, e.stage) for e in events if not e.resumed and e.shard >= 0)
    assert rerun == [(1, s) for s in sorted(("load", "generate", "annotate-mc", "fuse", "assemble"))]
    load = poisoned.manifest.stages["load"]
    assert (load.rows_in, load.quarantined) == (20, 4)  # 12 arith + 8 GSM8K problems; shard 1 holds 4
    entries: list[QuarantineEntry] = committed(out, "quarantine/load/", "quarantine")
    assert [(q.source, q.index, q.field, q.reason) for q in entries] == [
        ("arith", i, "<shard>", REASON) for i in range(4, 8)
    ]
    assert poisoned.content_hash != clean.content_hash
    problems = {p.problem_id for p in committed(out, "stages/load/", "problem")}
    assert len(problems) == 16
    # A rerun reuses everything, the poisoned shard included.
    events.clear()
    again = LocalRunner(on_event=events.append).run(config, out)
    assert again.content_hash == poisoned.content_hash
    assert all(e.resumed for e in events)


def test_restart_forgets_the_poison_records_with_the_rest_of_the_build(tmp_path: Path) -> None:
    config = small_config(runner={"workers": 0, "shard_size": 4})
    out = tmp_path / "b"
    clean = LocalRunner().run(config, out)
    BuildDir(out).record_poison(1, REASON)
    assert LocalRunner().run(config, out).content_hash != clean.content_hash
    restarted = LocalRunner().run(config, out, restart=True)
    assert (restarted.content_hash, BuildDir(out).poisoned(1)) == (clean.content_hash, None)
