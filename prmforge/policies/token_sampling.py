"""Choosing the next token of each sequence from its logits, each row with its own random generator.

Pure functions of tensors (torch is imported by the caller's module): a row's
token depends only on its logits, its sampling parameters and its generator, so
a request gives the same completion whichever other requests share its batch
(up to the floating-point effects of padding).

- ``temperature == 0``: greedy (the arg-max; ties go to the lowest token id).
- otherwise: softmax of ``logits / temperature``, restricted to the smallest set
  of most probable tokens whose mass reaches ``top_p`` (the token that crosses
  ``top_p`` is kept, so the set is never empty), renormalised, then one draw
  with the row's generator (``torch.multinomial``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["inverse_cdf", "nucleus_probs", "sample_next"]


def nucleus_probs(logits: Any, temperature: float, top_p: float) -> Any:
    """The distribution one row is sampled from (a 1-D float tensor summing to 1)."""
    import torch

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the tokens ranked above
    keep_sorted = before < top_p
    keep_sorted[0] = True
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep[order[keep_sorted]] = True
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum()


def inverse_cdf(sorted_probs: Any, uniforms: Any) -> Any:
    """Per row, the position (in ``sorted_probs``' order) of the first token whose cumulative
    probability exceeds ``uniform * total`` (rows need not be normalised)."""
    import torch

    cdf = torch.cumsum(sorted_probs, dim=-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    picks = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return picks.clamp(max=sorted_probs.shape[-1] - 1)


def sample_next(
    logits: Any, temperatures: Sequence[float], top_ps: Sequence[float], generators: Sequence[Any]
) -> list[int]:
    """One token id per row of ``logits`` (rows × vocabulary)."""
    import torch

    rows = logits.shape[0]
    if not (len(temperatures) == len(top_ps) == len(generators) == rows):
        raise ValueError("one temperature, top_p and generator per row")
    chosen = torch.argmax(logits, dim=-1)
    whole = [row for row in range(rows) if temperatures[row] > 0 and top_ps[row] >= 1.0]
    nucleus = [row for row in range(rows) if temperatures[row] > 0 and top_ps[row] < 1.0]
    for group, cut in ((whole, False), (nucleus, True)):  # a row's draw never depends on its neighbours
        if not group:
            continue
        index = torch.tensor(group, device=logits.device)
        temps = torch.tensor([temperatures[r] for r in group], device=logits.device).unsqueeze(-1)
        probs = torch.softmax(logits[index].float() / temps, dim=-1)
        uniforms = torch.stack(
            [torch.rand((), generator=generators[r], device=generators[r].device) for r in group]
        ).to(logits.device)
        if not cut:  # no nucleus to cut: the draw needs no sort
            chosen[index] = inverse_cdf(probs, uniforms)
            continue
        tops = torch.tensor([top_ps[r] for r in group], device=logits.device).unsqueeze(-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        keep = before < tops
        keep[:, 0] = True
        kept = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        picks = inverse_cdf(kept, uniforms)
        chosen[index] = order.gather(1, picks.unsqueeze(-1)).squeeze(-1)
    return [int(t) for t in chosen.tolist()]
