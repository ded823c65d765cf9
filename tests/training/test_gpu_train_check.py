"""scripts/gpu_train_check.py --tiny: the GPU throughput check's code path, on the CPU, for a few steps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_train_check.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_train_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_rows_are_full_length_and_prefix_labelled() -> None:
    script = _script()
    rows = script.synthetic_rows(6, 128, 512, seed=1)
    for row in rows:
        assert len(row.input_ids) == 128
        assert row.kept_steps >= 1
        targets = [row.labels[p] for p in row.positions]
        assert targets == sorted(targets, reverse=True)  # good steps, then bad ones
        assert all(row.input_ids[p] == script.SEPARATOR_ID for p in row.positions)


def test_the_tiny_mode_trains_and_reports_throughput_and_mfu(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    report = _script().main(["--tiny", "--steps", "3", "--checkpoint-every", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["tiny"] is True
    assert report["steps"] == 3
    assert report["checkpoints_saved"] == 1
    assert report["tokens_per_step"] == 4 * 128
    assert report["tokens_per_s"] > 0
    assert 0 < report["mfu_6n_without_embedding"] < report["mfu_6n"]
    assert report["matmul_peak_tflops"] > 0
    assert report["loss_first"] > 0
