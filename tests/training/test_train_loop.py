"""The training loop on the CPU with the tiny model: resume, soft labels, checkpoints, bf16, the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prmforge.schemas.errors import ConfigError, RowError
from prmforge.training.checkpoint import STATE_FILE, checkpoints_dir, list_checkpoints
from prmforge.training.config import PRM_META, TrainConfig
from prmforge.training.scoring import PRMScorer
from prmforge.training.trainer import train

ROWS = [
    {
        "prompt": f"Ann has {i} apples and buys 2.",
        "completions": [f"{i}+2 = {i + 2 + i % 2}.", "Done."],
        "labels": [i % 2 == 0, i % 2 == 0],
    }
    for i in range(10)
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _same(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "rows.jsonl", ROWS)
    config = TrainConfig(
        max_steps=6,
        batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        warmup_steps=2,
        checkpoint_every=2,
        seed=4,
    )
    whole = train(data, str(tiny_model_dir), tmp_path / "whole", config)
    first = train(data, str(tiny_model_dir), tmp_path / "cut", config, stop_after=5)
    assert (first.step, first.completed) == (5, False)
    assert not (tmp_path / "cut" / PRM_META).exists()
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [2, 4]
    second = train(data, str(tiny_model_dir), tmp_path / "cut", config, resume=True)
    assert (second.resumed_from, second.step, second.completed) == (4, 6, True)
    assert _same(tmp_path / "whole", tmp_path / "cut")
    with pytest.raises(ConfigError, match="already holds a trained PRM"):
        train(data, str(tiny_model_dir), tmp_path / "cut", config, resume=True)
    assert whole.last_loss == second.last_loss
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (
        tmp_path / "cut" / "metrics.jsonl"
    ).read_text()


def test_a_soft_label_of_0_7_trains_toward_0_7(tiny_model_dir: Path, tmp_path: Path) -> None:
    row = {
        "prompt": "Ann has 3 apples.",
        "completions": ["She buys 2 more: 3+2 = 5.", "The answer is 5."],
        "labels": [0.7, 0.2],
    }
    data = _jsonl(tmp_path / "soft.jsonl", [row])
    config = TrainConfig(
        max_steps=80, batch_size=1, learning_rate=1e-2, label_mode="soft", lr_schedule="constant"
    )
    train(data, str(tiny_model_dir), tmp_path / "soft", config)
    scores = PRMScorer(str(tmp_path / "soft"), device="cpu").score([(row["prompt"], row["completions"])])
    assert scores[0].scores == pytest.approx((0.7, 0.2), abs=0.03)  # TRL's int() would train 0.7 toward 0
    with pytest.raises(RowError, match=r"0\.7 is not 0 or 1"):
        train(data, str(tiny_model_dir), tmp_path / "hard", TrainConfig(max_steps=1))


def test_checkpoints_are_atomic_pruned_and_guarded(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "rows.jsonl", ROWS)
    out = tmp_path / "out"
    config = TrainConfig(max_steps=7, batch_size=2, checkpoint_every=2, keep_checkpoints=2)
    stale = checkpoints_dir(out) / "step-00000009.partial"
    stale.mkdir(parents=True)
    train(data, str(tiny_model_dir), out, config, stop_after=6)
    assert not stale.exists()  # an interrupted save is removed, never resumed from
    assert [s for s, _ in list_checkpoints(out)] == [4, 6]
    state = json.loads((checkpoints_dir(out) / "step-00000006" / STATE_FILE).read_text())
    assert state["step"] == 6
    assert state["total_steps"] == 7
    assert state["model"] == str(tiny_model_dir)
    with pytest.raises(ConfigError, match="pass --resume"):
        train(data, str(tiny_model_dir), out, config)
    with pytest.raises(ConfigError, match=r"another config \(learning_rate: 1e-05 then, 2e-05 now\)"):
        train(data, str(tiny_model_dir), out, config.model_copy(update={"learning_rate": 2e-5}), resume=True)
    with pytest.raises(ConfigError, match="another data"):
        train(_jsonl(tmp_path / "other.jsonl", ROWS[:6]), str(tiny_model_dir), out, config, resume=True)


def test_the_output_folder_and_its_metadata(build_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prm"
    config = TrainConfig(
        max_steps=3, batch_size=4, eval_split="validation", max_length=100, logging_every=1, seed=2
    )
    result = train(build_dir, str(tiny_model_dir), out, config)
    meta = json.loads((out / PRM_META).read_text())
    assert meta["format"] == "token-classification"
    assert meta["separator"] == "\n\n"
    assert meta["tokenization"] == "prmforge"
    assert meta["label_mode"] == "hard"
    assert meta["steps"] == 3
    assert meta["data"]["kind"] == "build"
    assert meta["data"]["steps_cut"] > 0
    assert meta["data"]["rows_trained"] + meta["data"]["rows_dropped"] == meta["data"]["rows"]
    assert set(meta["eval"]) >= {"loss", "step_accuracy", "first_error_f1"}
    assert result.eval is not None
    assert result.eval["rows"] == meta["data"]["eval_rows"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 3]
    assert "eval" in lines[-1]
    from transformers import AutoConfig

    saved = AutoConfig.from_pretrained(out)
    assert saved.architectures == ["LlamaForTokenClassification"]
    assert saved.num_labels == 2


@pytest.mark.slow
def test_bf16_and_gradient_checkpointing_run_on_the_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    """bf16 is allowed on a CPU (PyTorch emulates it where the CPU lacks it); refused only on old GPUs."""
    data = _jsonl(tmp_path / "rows.jsonl", ROWS)
    config = TrainConfig(max_steps=2, batch_size=2, bf16=True, gradient_checkpointing=True)
    result = train(data, str(tiny_model_dir), tmp_path / "bf16", config)
    assert result.completed
    assert result.last_loss is not None
    assert result.last_loss > 0
    assert _weights(tmp_path / "bf16")["score.weight"].dtype.is_floating_point
