"""Two processes (DDP over gloo on the CPU) train the weights one process does with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = [
    {
        "prompt": f"Ann has {i} apples and buys 2.",
        "completions": [f"{i}+2 = {i + 2 + i % 2}.", "Done."],
        "labels": [i % 2 == 0, i % 2 == 0],
    }
    for i in range(12)
]


def _train(
    args: list[str], config: Path, out: Path, data: Path, model: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
        "TRL_EXPERIMENTAL_SILENCE": "1",
    }
    command = [*args, "-m", "prmforge.training", "train", "--data", str(data), "--model", str(model)]
    command += ["--output", str(out), "--config", str(config), "--max-steps", "4"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("batch_size: 4\nlearning_rate: 1.0e-3\nseed: 3\nlogging_every: 1\ncheckpoint_every: 2\n")
    two.write_text("batch_size: 2\nlearning_rate: 1.0e-3\nseed: 3\nlogging_every: 1\ncheckpoint_every: 2\n")
    single = _train([sys.executable], one, tmp_path / "single", data, tiny_model_dir)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    ddp = _train(torchrun, two, tmp_path / "ddp", data, tiny_model_dir)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("trained 4 steps") == 1  # only the main process reports
    checkpoint = tmp_path / "ddp" / "checkpoints" / "step-00000002"
    assert {p.name for p in checkpoint.iterdir()} >= {"random_states_0.pkl", "random_states_1.pkl"}
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("single", "ddp")
    ]
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
    a = load_file(tmp_path / "single" / "model.safetensors")
    b = load_file(tmp_path / "ddp" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4  # only the reduction order differs
