"""The training loop: an :class:`accelerate.Accelerator` loop over tokenised rows.

One process (``prmforge train``) or many (``accelerate launch -m prmforge.training train ...``: DDP, each
process a slice of every step's rows, :mod:`prmforge.training.plan`). Per optimizer step: the step's
rows in ``gradient_accumulation_steps`` micro-batches, the loss SUMMED over labelled positions and divided
by the labelled positions of the whole step (all processes), so the update does not depend on how the
rows are split; gradients clipped to ``max_grad_norm``; AdamW at ``learning_rate * lr_factor(step)``.
Dropout is switched off (as TRL's ``disable_dropout``), so a run is a function of its seed.

``bf16`` is mixed precision (weights and optimizer in fp32, the forward under bfloat16 autocast). It is
refused on a CUDA GPU without native bfloat16 (before Ampere); on a CPU it is allowed (PyTorch runs bf16
everywhere, natively only with AVX512-BF16 or AMX, otherwise slowly), which the CPU tests use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import harmonic_mean, processbench_f1
from prmforge.schemas.errors import ConfigError
from prmforge.training.checkpoint import (
    STATE_FILE,
    clean_partials,
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
)
from prmforge.training.config import TrainConfig
from prmforge.training.losses import step_loss_sum, step_scores
from prmforge.training.plan import lr_factor, micro_batches, step_rows, total_steps
from prmforge.training.tokenize import IGNORE, TokenizedRow

__all__ = ["StepTiming", "TrainResult", "check_bf16", "collate", "evaluate_rows", "fit"]

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True, slots=True)
class StepTiming:
    """One optimizer step: its number (1-based), wall seconds, and the tokens every process fed."""

    step: int
    seconds: float
    tokens: int


@dataclass(slots=True)
class TrainResult:
    output: Path
    total_steps: int
    step: int
    resumed_from: int | None
    completed: bool
    last_loss: float | None = None
    eval: dict[str, float] | None = None
    timings: list[StepTiming] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    main_process: bool = True


def check_bf16(bf16: bool) -> None:
    """Refuse bf16 on a CUDA GPU that lacks native bfloat16 (see the module docstring)."""
    import torch

    if bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name()
        raise ConfigError(f"bf16: {name} has no native bfloat16 (it needs Ampere or newer); set bf16: false")


def collate(rows: Sequence[TokenizedRow], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and float ``labels`` (padding: :data:`IGNORE`)."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.float32)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids, dtype=torch.long)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(row.labels, dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _first_below(values: Sequence[float]) -> int:
    return next((t for t, v in enumerate(values) if v < 0.5), -1)


def evaluate_rows(
    accelerator: Any, model: Any, rows: Sequence[TokenizedRow], config: TrainConfig, pad_id: int
) -> dict[str, float]:
    """Loss, step accuracy (score >= 0.5 against target >= 0.5) and first-error F1 at 0.5 over ``rows``."""
    import torch

    model.eval()
    mine = list(rows[accelerator.process_index :: accelerator.num_processes])
    totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # loss, labelled, right, rows
    predicted: list[int] = []
    truth: list[int] = []
    with torch.no_grad():
        for start in range(0, len(mine), config.batch_size):
            chunk = mine[start : start + config.batch_size]
            batch = {k: v.to(accelerator.device) for k, v in collate(chunk, pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss, count = step_loss_sum(logits, batch["labels"], config.label_mode)
            scores = step_scores(logits).cpu()
            for i, row in enumerate(chunk):
                got = [float(scores[i, p]) for p in row.positions]
                want = [row.labels[p] for p in row.positions]
                totals[2] += sum((g >= 0.5) == (w >= 0.5) for g, w in zip(got, want, strict=True))
                predicted.append(_first_below(got))
                truth.append(_first_below(want))
            totals[0] += float(loss)
            totals[1] += float(count)
    totals[3] = len(mine)
    totals = accelerator.reduce(totals, reduction="sum")
    local = processbench_f1(predicted, truth)
    hits = torch.tensor(
        [local.error_hits, local.n_error, local.correct_hits, local.n_correct],
        dtype=torch.float64,
        device=accelerator.device,
    )
    hits = accelerator.reduce(hits, reduction="sum")
    error_acc = float(hits[0] / hits[1]) if hits[1] else float("nan")
    correct_acc = float(hits[2] / hits[3]) if hits[3] else float("nan")
    model.train()
    return {
        "loss": float(totals[0] / totals[1]) if totals[1] else float("nan"),
        "step_accuracy": float(totals[2] / totals[1]) if totals[1] else float("nan"),
        "first_error_f1": harmonic_mean(error_acc, correct_acc),
        "error_acc": error_acc,
        "correct_acc": correct_acc,
        "rows": float(totals[3]),
    }


def _append_metrics(output: Path, record: dict[str, Any]) -> None:
    with (output / METRICS_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def _trim_metrics(output: Path, step: int) -> None:
    """Drop the metric lines of steps after ``step`` (a resumed run logs them again)."""
    path = output / METRICS_FILE
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _disable_dropout(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _resume_point(output: Path, resume: bool, fingerprint: dict[str, Any]) -> Path | None:
    clean_partials(output)
    if not resume:
        if list_checkpoints(output):
            raise ConfigError(
                f"--output: {output} holds checkpoints of an earlier run; pass --resume to continue it "
                "or choose another output folder"
            )
        return None
    found = latest_checkpoint(output)
    if found is None:
        return None
    path, state = found
    for key, value in fingerprint.items():
        if state.get(key) != value:
            raise ConfigError(
                f"--resume: the checkpoint {path.name} was made with another {key} "
                f"({_difference(state.get(key), value)}); resume with the same data, model and configuration"
            )
    return path


def _difference(before: Any, now: Any) -> str:
    """What changed, in words: the differing fields of two mappings, else both values (pure)."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        return ", ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in keys)
    return f"{before!r} then, {now!r} now"


@dataclass(slots=True)
class _Run:
    """The prepared pieces one optimizer step needs."""

    accelerator: Any
    model: Any
    optimizer: Any
    rows: Sequence[TokenizedRow]
    config: TrainConfig
    pad_id: int
    total: int
    global_batch: int

    def step(self, step: int) -> tuple[float, int]:
        """Optimizer step ``step`` (0-based): ``(mean loss over its labelled steps, tokens fed)``."""
        import torch

        acc, config = self.accelerator, self.config
        world, device = acc.num_processes, acc.device
        batch = step_rows(len(self.rows), self.global_batch, config.seed, step)
        micro = [
            {k: v.to(device) for k, v in collate([self.rows[i] for i in part], self.pad_id).items()}
            for part in micro_batches(batch, acc.process_index, world, config.gradient_accumulation_steps)
        ]
        local = torch.tensor(
            [
                float(sum(int((m["labels"] != IGNORE).sum()) for m in micro)),
                float(sum(int(m["attention_mask"].sum()) for m in micro)),
            ],
            dtype=torch.float64,
            device=device,
        )
        labelled, tokens = (float(x) for x in acc.reduce(local.clone(), reduction="sum"))
        factor = lr_factor(step, self.total, config.warmup_steps, config.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate * factor
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for k, m in enumerate(micro):
            last = k == len(micro) - 1
            sync: AbstractContextManager[Any] = nullcontext() if last else acc.no_sync(self.model)
            with sync:
                logits = self.model(input_ids=m["input_ids"], attention_mask=m["attention_mask"]).logits
                loss, _ = step_loss_sum(logits, m["labels"], config.label_mode)
                acc.backward(loss * world / max(labelled, 1.0))
            loss_sum += loss.detach().double()
        if config.max_grad_norm is not None:
            acc.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean_loss = float(acc.reduce(loss_sum, reduction="sum")) / max(labelled, 1.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return mean_loss, int(tokens)


def _prepare(model: Any, rows: Sequence[TokenizedRow], config: TrainConfig, pad_id: int) -> _Run:
    import torch
    from accelerate import Accelerator  # type: ignore[import-untyped]
    from accelerate.state import AcceleratorState, GradientState  # type: ignore[import-untyped]
    from accelerate.utils import set_seed  # type: ignore[import-untyped]

    check_bf16(config.bf16)
    # The accelerator state is a process-wide singleton fixed by its first Accelerator: a second run in
    # one process (tests, benches) with another precision needs a fresh one. The distributed state
    # (PartialState: the process group) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision="bf16" if config.bf16 else "no")
    set_seed(config.seed)
    global_batch = config.batch_size * config.gradient_accumulation_steps * accelerator.num_processes
    total = total_steps(len(rows), global_batch, config.epochs, config.max_steps)
    if config.gradient_checkpointing:
        model.config.use_cache = False
        enable = getattr(model, "activation_checkpointing_enable", None)  # its name from transformers 5.2x on
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _disable_dropout(model)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    return _Run(accelerator, model, optimizer, rows, config, pad_id, total, global_batch)


def fit(
    model: Any,
    rows: Sequence[TokenizedRow],
    config: TrainConfig,
    output: Path,
    *,
    pad_id: int,
    eval_rows: Sequence[TokenizedRow] = (),
    resume: bool = False,
    stop_after: int | None = None,
    fingerprint: dict[str, Any] | None = None,
    save_final: Callable[[Any, Any, TrainResult], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a token-classification model) on ``rows``; see the module docstring.

    ``stop_after`` ends the run after that many optimizer steps (an interruption, for tests and
    preemptible jobs: the last checkpoint resumes it). ``fingerprint`` (data, model and configuration
    digests) is stored in every checkpoint and must match on resume. ``save_final(accelerator,
    prepared_model, result)`` writes the trained model once the last step is done (every process calls
    it: gathering a sharded state is collective).
    """
    if not rows:
        raise ConfigError("--data: no row has a step that fits in max_length; nothing to train on")
    run = _prepare(model, rows, config, pad_id)
    acc, total = run.accelerator, run.total
    output.mkdir(parents=True, exist_ok=True)
    fingerprint = {**(fingerprint or {}), "total_steps": total, "global_batch": run.global_batch}
    checkpoint = _resume_point(output, resume, fingerprint)
    start = 0
    if checkpoint is not None:
        acc.load_state(str(checkpoint))
        start = int(json.loads((checkpoint / STATE_FILE).read_text())["step"])
    if acc.is_main_process:
        _trim_metrics(output, start)
    acc.wait_for_everyone()
    result = TrainResult(output, total, start, start if checkpoint is not None else None, False)
    result.main_process = bool(acc.is_main_process)
    for step in range(start, total if stop_after is None else min(total, stop_after)):
        began = time.perf_counter()
        loss, tokens = run.step(step)
        done = step + 1
        result.step, result.last_loss = done, loss
        result.timings.append(StepTiming(done, time.perf_counter() - began, tokens))
        if acc.is_main_process and (done % config.logging_every == 0 or done == total):
            lr = run.optimizer.param_groups[0]["lr"]
            _append_metrics(output, {"step": done, "loss": loss, "lr": lr})
        if done == total:
            break
        if eval_rows and config.eval_every is not None and done % config.eval_every == 0:
            scores = evaluate_rows(acc, run.model, eval_rows, config, pad_id)
            if acc.is_main_process:
                _append_metrics(output, {"step": done, "eval": scores})
        if config.checkpoint_every is not None and done % config.checkpoint_every == 0:
            save_checkpoint(acc, output, done, fingerprint, config.keep_checkpoints)
    if result.step < total:
        return result
    result.completed = True
    if eval_rows:
        result.eval = evaluate_rows(acc, run.model, eval_rows, config, pad_id)
        if acc.is_main_process:
            _append_metrics(output, {"step": total, "eval": result.eval})
    acc.wait_for_everyone()
    if save_final is not None:
        save_final(acc, run.model, result)
    acc.wait_for_everyone()
    return result
