"""Fault injection on the build directory and the inputs (issue #6, items 5 and 7).

A vanishing temporary file, a corrupt request cache, the leftovers of a first run killed before
build.json, a full disk, oversized rows, one question under two ids, and input paths that are not
files. Each ends either in the content hash of a clean build or in an exact, traceback-free error.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from prmforge.pipelines import tables
from prmforge.pipelines.cli import app
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.sources import default_gsm8k_path
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import BuildStateError

PRMFORGE = Path(sys.executable).with_name("prmforge")
WAIT_S = 120  # a bound on a CLI run, never a timing expectation
cli = CliRunner()


def config_data(seed: int, count: int = 40, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "faults",
        "seed": seed,
        "inputs": [{"kind": "arith", "count": count, "min_steps": 2, "max_steps": 4}],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 2}],
        "runner": {"workers": 0, "shard_size": 4},
    }
    return {**data, **overrides}


def write_config(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "build.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def build(data: dict[str, Any], out: Path, **kwargs: Any) -> Any:
    return LocalRunner().run(parse_config(data, base_dir=out.parent), out, **kwargs)


def prmforge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [str(PRMFORGE), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S, check=False)


def flat(text: str) -> str:
    """Rich wraps long lines; compare messages with whitespace collapsed."""
    return " ".join(text.split())


def quarantined(root: Path, stage: str) -> list[QuarantineEntry]:
    manifest = Manifest.read(root)
    return [
        q
        for f in manifest.under(f"quarantine/{stage}/")
        for q in tables.decode("quarantine", pq.read_table(root / f.path))
    ]


@pytest.fixture(scope="module")
def clean_hash(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], str]:
    hashes: dict[tuple[int, int], str] = {}

    def get(seed: int, count: int = 40) -> str:
        if (seed, count) not in hashes:
            out = tmp_path_factory.mktemp(f"clean-{seed}-{count}") / "out"
            hashes[seed, count] = build(config_data(seed, count), out).content_hash
        return hashes[seed, count]

    return get


# -- 3. sweeping temporaries while a killed run's worker renames them ------------------------------


def test_sweep_tolerates_temporaries_that_vanish_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    names = [
        "stages/load/.shard-00000.parquet.tmp-a",
        "markers/load/.shard-00000.json.tmp-b",
        "stages/fuse/.shard-00001.parquet.tmp-c",
        "stages/fuse/.shard-00002.parquet.tmp-d",
    ]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"partial")
    renamed, deleted = root / names[0], root / names[1]
    final = root / "stages/load/shard-00000.parquet"
    real_unlink, real_is_file = Path.unlink, Path.is_file

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == renamed:  # renamed into place after the listing and the check, before the unlink
            os.replace(self, final)
        real_unlink(self, missing_ok=missing_ok)

    def is_file(self: Path) -> bool:
        if self == deleted:  # gone between the listing and the check
            real_unlink(self)
        return real_is_file(self)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(Path, "is_file", is_file)
    assert BuildDir(root).sweep_temporaries() == 2
    monkeypatch.undo()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "stages/load/shard-00000.parquet"
    ]
    assert final.read_bytes() == b"partial"


# -- 4. a corrupt request cache ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_corrupt_cache_is_set_aside_with_a_warning_and_the_rerun_gives_the_same_data(
    tmp_path: Path, clean_hash: Callable[..., str], workers: str
) -> None:
    data = config_data(31)
    out = tmp_path / "out"
    assert build(data, out).content_hash == clean_hash(31)
    for stage in ("annotate-mc", "fuse", "assemble", "dedup", "write"):  # labelling must ask the cache again
        shutil.rmtree(out / "markers" / stage)
    cache = out / "cache.sqlite"
    garbage = random.Random(5).randbytes(cache.stat().st_size)
    cache.write_bytes(garbage)
    done = prmforge("build", write_config(tmp_path, data), "--output", out, "--workers", workers)
    assert done.returncode == 0, done.stderr[-3000:]
    text = flat(done.stderr)
    assert f"request cache {cache} could not be used" in text
    assert "and started a fresh cache" in text
    aside = list(out.glob("cache.sqlite.corrupt-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [garbage]
    assert Manifest.read(out).content_hash == clean_hash(31)


# -- 5. what a first run killed before build.json left behind -------------------------------------

LEFTOVERS = {
    "first-run": ["cache.sqlite", "stages/load/shard-00000.parquet", ".build.json.tmp-3f2a"],
    "restart": [".lock", "cache.sqlite.lock", "cache.sqlite.corrupt-20261201T101010", ".build.json.tmp-9c"],
}


def plant(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"left by a killed run")


@pytest.mark.parametrize("restart", [False, True], ids=["rerun", "restart"])
@pytest.mark.parametrize("left", sorted(LEFTOVERS))
def test_leftovers_of_a_run_killed_before_build_json_are_built_over(
    tmp_path: Path, clean_hash: Callable[..., str], left: str, restart: bool
) -> None:
    out = tmp_path / "out"
    plant(out, LEFTOVERS[left])
    result = build(config_data(32, count=8), out, restart=restart)
    assert not result.resumed
    assert result.content_hash == clean_hash(32, 8)
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []
    pq.read_metadata(out / "stages/load/shard-00000.parquet")  # rebuilt, not the junk


@pytest.mark.parametrize("restart", [False, True], ids=["rerun", "restart"])
def test_a_directory_with_a_foreign_file_is_refused_and_left_untouched(tmp_path: Path, restart: bool) -> None:
    out = tmp_path / "out"
    plant(out, [*LEFTOVERS["first-run"], "notes.txt"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(BuildStateError) as refused:
        build(config_data(32, count=8), out, restart=restart)
    assert str(refused.value) == f"{out} exists, is not empty and holds no build.json: refusing to write" + (
        " or to delete it" if restart else ""
    )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# -- 6. a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only); always unmounted at the end."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as err:
            pytest.skip(f"cannot mount a tmpfs here (root with CAP_SYS_ADMIN needed): {err}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True, capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["40k", "600k"], ids=["cache-runs-out", "shards-run-out"])
def test_a_full_disk_fails_cleanly_and_the_build_resumes_once_there_is_room(
    tmp_path: Path, tmpfs: Callable[[str], Path], clean_hash: Callable[..., str], size: str
) -> None:
    disk = tmpfs(size)
    out = disk / "b"
    config = write_config(tmp_path, config_data(33))
    failed = prmforge("build", config, "--output", out, "--workers", "2")
    assert failed.returncode == 1, failed.stderr[-3000:]
    text = flat(failed.stderr)
    assert f"error {out}" in text
    assert "no space left on the device" in text
    assert "free some space and rerun to resume" in text
    assert "Traceback" not in failed.stderr
    assert not (out / "manifest.json").exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True, capture_output=True)
    resumed = prmforge("build", config, "--output", out, "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert Manifest.read(out).content_hash == clean_hash(33)


# -- 7. limits -------------------------------------------------------------------------------------


def gsm8k_lines(count: int) -> list[dict[str, str]]:
    with default_gsm8k_path().open() as handle:
        return [json.loads(next(handle)) for _ in range(count)]


def long_answer(steps: int) -> dict[str, str]:
    return {
        "question": "Add one and one, again and again. What do you get?",
        "answer": "<<1+1=2>>2\n" * steps + "#### 2",
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gsm8k_build(path: Path) -> dict[str, Any]:
    return config_data(34, inputs=[{"kind": "gsm8k", "path": str(path)}])


def test_a_gsm8k_answer_over_max_steps_is_quarantined_at_load_and_the_rest_is_built(tmp_path: Path) -> None:
    rows = gsm8k_lines(8)
    path = write_jsonl(tmp_path / "g.jsonl", [*rows[:4], long_answer(500), *rows[4:]])
    result = build(gsm8k_build(path), tmp_path / "out")
    assert result.problems == ()
    [entry] = quarantined(tmp_path / "out", "load")
    assert (entry.index, entry.field) == (4, "answer")
    assert "limits.max_steps (128)" in entry.reason
    assert result.manifest.stages["load"].accepted == 8
    assert result.manifest.splits["train"] == 16  # 2 rollouts of each of the 8 others


class WorkBudgetExceeded(Exception):
    """Raised from inside the build when the work budget is spent."""


def test_a_5000_step_gsm8k_answer_costs_no_more_than_max_steps_of_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work, not time: a row over the limit may cost what a row at the limit costs (128 steps take
    about 8,000 comparisons of exact values; the whole build of the 8 other rows about 400)."""
    budget = [100_000]
    real_eq = Fraction.__eq__

    def counted_eq(self: Fraction, other: object) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            raise WorkBudgetExceeded("more than 100,000 comparisons of exact values")
        return real_eq(self, other)

    rows = gsm8k_lines(8)
    path = write_jsonl(tmp_path / "g.jsonl", [*rows[:4], long_answer(5000), *rows[4:]])
    monkeypatch.setattr(Fraction, "__eq__", counted_eq)
    result = build(gsm8k_build(path), tmp_path / "out")
    monkeypatch.undo()
    [entry] = quarantined(tmp_path / "out", "load")
    assert (entry.index, entry.field) == (4, "answer")
    assert "limits.max_steps (128)" in entry.reason
    assert result.manifest.splits["train"] == 16


def test_a_gsm8k_reference_answer_over_max_answer_bytes_is_quarantined(tmp_path: Path) -> None:
    rows = gsm8k_lines(4)
    prose = "We think about it for a while. " * 1300  # 40,300 bytes, 2 replayable steps
    huge = {
        "question": "What is 2 + 3, doubled?",
        "answer": f"{prose}\n2+3 = <<2+3=5>>5\n5*2 = <<5*2=10>>10\n#### 10",
    }
    path = write_jsonl(tmp_path / "g.jsonl", [*rows, huge])
    build(gsm8k_build(path), tmp_path / "out")
    entries = quarantined(tmp_path / "out", "load")
    assert [e.index for e in entries] == [4]
    assert "limits.max_answer_bytes (32768)" in entries[0].reason


def test_a_5000_step_imported_rollout_is_quarantined_at_load(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 2+3, doubled?", "steps": ["2+3 = 5", "5*2 = 10"], "gold": "10"},
        {"question": "What is 1+1?", "steps": ["1+1 = 2"] * 5000, "gold": "2"},
        {"question": "What is 7-2, doubled?", "steps": ["7-2 = 5", "5*2 = 11"], "gold": "10"},
    ]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    data = config_data(
        35,
        inputs=[{"kind": "rollouts", "path": str(path), "columns": {"answer": "gold"}}],
        annotate=[{"kind": "equations"}],
    )
    result = build(data, tmp_path / "out")
    assert result.problems == ()
    [entry] = quarantined(tmp_path / "out", "load")
    assert (entry.index, entry.field, entry.reason) == (
        1,
        "steps",
        "5000 steps exceed limits.max_steps (128)",
    )
    assert result.manifest.splits["train"] == 2


# -- 8. one question under two problem ids -------------------------------------------------------


def test_one_question_under_two_ids_lands_in_one_split_and_is_counted(tmp_path: Path) -> None:
    rows = gsm8k_lines(10)
    twins = [{**r, "question": "  " + r["question"].upper().replace(" ", "   ") + "\n"} for r in rows[:6]]
    path = write_jsonl(tmp_path / "g.jsonl", [*rows, *twins])  # line i and line 10 + i share a question
    data = config_data(36, inputs=[{"kind": "gsm8k", "path": str(path)}], split={"validation": 0.5})
    result = build(data, tmp_path / "out")
    split_of: dict[str, set[str]] = {}
    for f in result.manifest.under("data/"):
        for e in tables.decode("example", pq.read_table(tmp_path / "out" / f.path)):
            split_of.setdefault(e.problem_id, set()).add(e.split)
    pairs = [(split_of[f"gsm8k-{i}"], split_of[f"gsm8k-{10 + i}"]) for i in range(6)]
    assert all(len(a) == 1 and a == b for a, b in pairs), pairs
    assert {next(iter(a)) for a, _ in pairs} == {"train", "validation"}  # both splits are exercised
    stats = cli.invoke(app, ["stats", str(tmp_path / "out"), "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["dedup"]["duplicate_questions"] == 6


# -- 9. an input path that is not a file -----------------------------------------------------------


def bad_path(tmp_path: Path, kind: str) -> tuple[Path, str]:
    if kind == "directory":
        (tmp_path / "rows").mkdir()
        return tmp_path / "rows", "is a directory, not a file"
    if kind == "fifo":
        os.mkfifo(tmp_path / "rows.jsonl")
        return tmp_path / "rows.jsonl", "is a FIFO, not a regular file"
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    return tmp_path / "a.jsonl", "is a symlink loop"


@pytest.mark.parametrize(
    ("input_kind", "kind"),
    # A directory is a valid `problems` path (a `datasets` folder), so only the GSM8K input refuses it.
    [
        ("gsm8k", "directory"),
        ("gsm8k", "fifo"),
        ("gsm8k", "symlink-loop"),
        ("problems", "fifo"),
        ("problems", "symlink-loop"),
    ],
)
def test_an_input_path_that_is_not_a_file_is_named_for_what_it_is(
    tmp_path: Path, kind: str, input_kind: str
) -> None:
    path, what = bad_path(tmp_path, kind)
    spec = {"kind": input_kind, "path": str(path)} | ({"preset": "gsm8k"} if input_kind == "problems" else {})
    config = write_config(tmp_path, config_data(37, inputs=[spec]))
    out = tmp_path / "out"
    for args, code in ((["validate", str(config)], 2), (["build", str(config), "--output", str(out)], 1)):
        # A FIFO in a subprocess: a regression that opened it would block, and the bound ends it.
        if kind == "fifo":
            done = prmforge(*args)
            exit_code, stderr, crashed = done.returncode, done.stderr, "Traceback" in done.stderr
        else:
            result = cli.invoke(app, args)
            exit_code, stderr = result.exit_code, result.stderr
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        assert exit_code == code, stderr
        assert f"inputs.0.path: {path} {what}" in flat(stderr)
        assert not crashed
    assert not out.exists()
