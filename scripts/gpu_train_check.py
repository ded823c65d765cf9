"""GPU check of `prmforge train`'s loop (issue #14): a ~0.5B token-classification PRM in bf16, tokens/s, MFU.

What it does, in order, and prints as one JSON object (also written to ``--out``):

1. Builds a randomly initialised ``Qwen2ForTokenClassification`` (two labels) with Qwen2.5-0.5B's shape
   (vocab 151936, hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864: about 0.49B parameters),
   directly on the GPU. Nothing is downloaded.
2. Generates ``--rows`` synthetic stepwise rows of exactly ``--seq-len`` tokens (no padding): a random
   prompt, then steps of 20-80 random tokens each ended by a separator token, labelled with
   :func:`prmforge.training.tokenize.place_labels` (a step holding the "error" token is wrong, and so is
   every later one: a learnable rule, so the loss should fall).
3. Trains ``--steps`` optimizer steps with :func:`prmforge.training.loop.fit` (the loop `prmforge train`
   runs): bf16 mixed precision, AdamW, ``--batch-size`` rows per step, one atomic checkpoint (weights and
   optimizer state) every ``--checkpoint-every`` steps.
4. Measures the card's bf16 matmul peak: ``--matmul-size``-square bf16 matmuls in a timed loop.
5. Reports tokens/s over the steps after the first ``--warmup`` (a checkpoint's save is outside every
   step's time) and MFU = 6 N tokens/s / peak, with N all parameters, N without the embedding (a lookup,
   no matmul), and 6N plus attention's 12 L d T per token (PaLM's appendix B), beside the peak memory
   and the first and last losses.

``--tiny`` runs the same on the CPU with a two-layer model, for a smoke test (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEPARATOR_ID = 11
ERROR_ID = 13


def synthetic_rows(count: int, seq_len: int, vocab: int, seed: int) -> list[Any]:
    """``count`` rows of exactly ``seq_len`` tokens, labelled by the error-token rule (see the docstring)."""
    from prmforge.training.tokenize import place_labels

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        prompt = [rng.randrange(20, vocab) for _ in range(min(64, seq_len // 4))]
        room = seq_len - len(prompt)
        steps: list[list[int]] = []
        while room > 1:
            length = min(rng.randrange(20, 81), room - 1)
            step = [rng.randrange(20, vocab) for _ in range(length)]
            if rng.random() < 0.15:
                step[rng.randrange(length)] = ERROR_ID
            steps.append(step)
            room -= length + 1
        wrong = next((k for k, s in enumerate(steps) if ERROR_ID in s), len(steps))
        targets = [1.0 if k < wrong else 0.0 for k in range(len(steps))]
        if room == 1:  # one token left: lengthen the prompt so that every row is exactly seq_len long
            prompt.append(rng.randrange(20, vocab))
        rows.append(place_labels(prompt, steps, [SEPARATOR_ID], targets, max_length=seq_len))
    return rows


def model_config(tiny: bool) -> Any:
    from transformers import Qwen2Config

    if tiny:
        return Qwen2Config(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        )
    return Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    )


def matmul_peak(device: str, size: int, iters: int) -> float:
    """Measured bf16 matmul FLOP/s: ``iters`` products of two ``size``-square matrices, after warmup."""
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(iters):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2.0 * size**3 * iters / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="a two-layer model on the CPU (smoke test)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the throughput")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--matmul-iters", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import Qwen2ForTokenClassification

    from prmforge.training.config import TrainConfig
    from prmforge.training.loop import fit

    if args.tiny:
        args.seq_len, args.batch_size, args.rows = (
            min(args.seq_len, 128),
            min(args.batch_size, 4),
            min(args.rows, 16),
        )
        args.matmul_size, args.matmul_iters, args.warmup = min(args.matmul_size, 256), 3, min(args.warmup, 1)
    elif not torch.cuda.is_available():
        print("no CUDA device: run with --tiny for the CPU smoke test", file=sys.stderr)
        raise SystemExit(2)
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    config = model_config(args.tiny)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForTokenClassification(config)  # type: ignore[no-untyped-call]
    params = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    rows = synthetic_rows(args.rows, args.seq_len, config.vocab_size, seed=0)
    train_config = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=1e-4,
        warmup_steps=min(10, args.steps),
        bf16=True,
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_every=args.checkpoint_every if args.checkpoint_every < args.steps else None,
        keep_checkpoints=1,
        max_length=args.seq_len,
        logging_every=1,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        result = fit(model, rows, train_config, Path(tmp) / "out", pad_id=0)
        wall = time.perf_counter() - began
        losses = [
            json.loads(line)["loss"]
            for line in (Path(tmp) / "out" / "metrics.jsonl").read_text().splitlines()
        ]
    measured = result.timings[args.warmup :] or result.timings
    seconds = sum(t.seconds for t in measured)
    tokens_per_s = sum(t.tokens for t in measured) / seconds
    peak = matmul_peak(device, args.matmul_size, args.matmul_iters)
    attention = 12 * config.num_hidden_layers * config.hidden_size * args.seq_len  # FLOPs per token, fwd+bwd
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.machine()})",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "tiny": args.tiny,
        "parameters": params,
        "parameters_without_embedding": params - embedding,
        "steps": result.step,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_per_step": measured[0].tokens,
        "step_seconds_median": statistics.median(t.seconds for t in measured),
        "tokens_per_s": tokens_per_s,
        "matmul_peak_tflops": peak / 1e12,
        "mfu_6n": 6 * params * tokens_per_s / peak,
        "mfu_6n_without_embedding": 6 * (params - embedding) * tokens_per_s / peak,
        "mfu_with_attention": (6 * (params - embedding) + attention) * tokens_per_s / peak,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "wall_seconds": wall,
        "outside_steps_seconds": wall - sum(t.seconds for t in result.timings),  # setup, checkpoints
        "checkpoints_saved": (args.steps - 1) // args.checkpoint_every
        if train_config.checkpoint_every
        else 0,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
