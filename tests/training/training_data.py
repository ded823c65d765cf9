"""Helpers of the training tests: a small finished build, ProcessBench items written to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PROCESSBENCH = SHARED / "processbench_gsm8k.json"


def small_build(root: Path, **overrides: Any) -> Path:
    """A finished build: 10 arith + 4 GSM8K problems, 2 rollouts each, labelled by MC (N=2) and equations."""
    from prmforge.pipelines.config import parse_config
    from prmforge.pipelines.runners.local import LocalRunner

    data: dict[str, Any] = {
        "name": "train-test",
        "seed": 3,
        "inputs": [
            {"kind": "arith", "count": 10, "min_steps": 2, "max_steps": 5},
            {"kind": "gsm8k", "offset": 0, "limit": 4},
        ],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "equations"}, {"kind": "mc", "n": 2}],
        "fuse": {"rule": "earliest"},
        "split": {"validation": 0.3},
        "runner": {"workers": 0, "shard_size": 8, "cache": False},
    }
    data.update(overrides)
    LocalRunner().run(parse_config(data), root)
    return root


def processbench_file(path: Path, start: int, count: int, *, jsonl: bool = False) -> Path:
    """Items ``[start, start + count)`` of the shared ProcessBench GSM8K file, written to ``path``."""
    if not PROCESSBENCH.is_file():
        pytest.fail(f"the shared ProcessBench GSM8K file is missing at {PROCESSBENCH}")
    items = json.loads(PROCESSBENCH.read_text(encoding="utf-8"))[start : start + count]
    text = "".join(json.dumps(i) + "\n" for i in items) if jsonl else json.dumps(items)
    path.write_text(text, encoding="utf-8")
    return path


def write_qwen_style_prm(tiny_model_dir: Path, out: Path, seed: int = 0) -> Path:
    """A randomly initialised two-label token classifier whose tokenizer has the step tag ``<extra_0>``."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=2)
    config.vocab_size = len(tokenizer)
    config.architectures = ["LlamaForTokenClassification"]
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
