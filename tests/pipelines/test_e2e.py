"""Black-box builds through the CLI: bad input, SIGKILL and resume, the quickstart, `datasets`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from prmforge.pipelines.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import quarantine_from_table
from prmforge.schemas.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
PRMFORGE = [sys.executable, "-m", "prmforge.pipelines.cli"]


def _bad_gsm8k_file(tmp_path: Path, gsm8k_file: Path) -> Path:
    good = gsm8k_file.read_bytes().splitlines()[:6]
    bad = [
        json.dumps({"answer": "1+1=<<1+1=2>>2\n#### 2"}).encode(),  # missing question
        json.dumps({"question": 7, "answer": "1+1=<<1+1=2>>2\n#### 2"}).encode(),  # wrong type
        b'{"question": "caf\xe9 ?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}',  # invalid UTF-8
        json.dumps({"question": "x" * (50 * 1024 * 1024), "answer": "1+1=<<1+1=2>>2\n#### 2"}).encode(),
    ]
    lines = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3], bad[3], good[4], good[5]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.slow
def test_bad_rows_are_quarantined_and_nothing_else_is_lost(tmp_path: Path, gsm8k_file: Path) -> None:
    path = _bad_gsm8k_file(tmp_path, gsm8k_file)
    config = parse_config(
        {
            "name": "mixed",
            "suites": [{"kind": "gsm8k", "path": str(path)}],
            "generate": {"rollouts_per_problem": 1},
            "annotate": {"mc": {"n": 2}},
            "runner": {"workers": 0, "shard_size": 4},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["stages"]["load"] == {"rows_in": 10, "accepted": 6, "quarantined": 4, "rows_out": 6}
    rows = []
    for f in manifest["files"]:
        if f["path"].startswith("quarantine/load/"):
            rows.extend(quarantine_from_table(pq.read_table(tmp_path / "b" / f["path"])))
    by_index = {r.index: r for r in rows}
    assert sorted(by_index) == [1, 3, 5, 7]
    assert by_index[1].field == "question"
    assert "missing" in by_index[1].reason
    assert by_index[3].field == "question"
    assert "found number" in by_index[3].reason
    assert by_index[5].field == "<row>"
    assert "UTF-8" in by_index[5].reason
    assert by_index[7].field == "question"
    assert "65536" in by_index[7].reason
    assert by_index[7].byte_length > 50 * 1024 * 1024
    assert len(by_index[7].preview) == 512
    problems = summarize(tmp_path / "b")
    assert problems["rows"] == 6  # one rollout for each of the six good rows
    assert problems["quarantined"] == 4


def _write_config(tmp_path: Path, count: int) -> Path:
    config = {
        "name": "killable",
        "seed": 3,
        "suites": [{"kind": "arith", "count": count, "min_steps": 3, "max_steps": 7}],
        "generate": {"rollouts_per_problem": 4},
        "annotate": {"mc": {"n": 8}},
        "runner": {"workers": 2, "shard_size": 4},
    }
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_gives_the_uninterrupted_hash(tmp_path: Path) -> None:
    config = _write_config(tmp_path, count=96)
    clean = subprocess.run(
        [*PRMFORGE, "build", str(config), "--output", str(tmp_path / "clean")], capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    clean_hash = json.loads((tmp_path / "clean" / "manifest.json").read_text())["content_hash"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*PRMFORGE, "build", str(config), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("markers/assemble/*.json"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(out.glob("markers/assemble/*.json")))
    assert 3 <= committed < 24, "the kill must land mid-build"
    assert not (out / "manifest.json").exists()

    rerun = subprocess.run(
        [*PRMFORGE, "build", str(config), "--output", str(out)], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["content_hash"] == clean_hash
    assert list(out.rglob(".*.tmp-*")) == []  # a resumed build sweeps the killed run's temporary files


@pytest.mark.slow
def test_quickstart_builds_and_loads_with_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "qs"
    run = subprocess.run(
        [*PRMFORGE, "build", str(ROOT / "configs" / "quickstart.yaml"), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "first-error F1" in run.stdout
    again = subprocess.run(
        [*PRMFORGE, "build", str(ROOT / "configs" / "quickstart.yaml"), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr
    assert "0 shard(s) run" in again.stdout
    files = sorted(str(p) for p in (out / "data").glob("train-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    manifest = json.loads((out / "manifest.json").read_text())
    assert ds.num_rows == manifest["splits"]["train"]["rows"]
    assert {"prompt", "completions", "labels"} <= set(ds.column_names)
    row = ds[0]
    assert isinstance(row["prompt"], str)
    assert len(row["completions"]) == len(row["labels"])
    assert all(isinstance(label, bool) for label in row["labels"])
    whole = datasets.load_dataset("parquet", data_dir=str(out / "data"))
    assert set(whole) == {"train", "validation"}
    assert whole["validation"].num_rows == manifest["splits"]["validation"]["rows"] > 0
