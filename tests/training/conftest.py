"""Fixtures of the training tests: a small build, a tokenizer with a BOS, a PRM trained on the build."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_data import small_build


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_build(tmp_path_factory.mktemp("train-build") / "build")


@pytest.fixture(scope="session")
def bos_tokenizer_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer with a BOS token that TRL prepends (its post-processor adds nothing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.bos_token = "<|im_start|>"
    out = tmp_path_factory.mktemp("bos-tokenizer")
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def trained_prm(build_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PRM `prmforge train` wrote: 4 steps on the small build."""
    from prmforge.training.config import TrainConfig
    from prmforge.training.trainer import train

    out = tmp_path_factory.mktemp("trained-prm")
    config = TrainConfig(max_steps=4, batch_size=4, learning_rate=1e-3, seed=1)
    result = train(build_dir, str(tiny_model_dir), out, config)
    assert result.completed
    return out
