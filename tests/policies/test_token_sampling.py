"""Per-row next-token choice: greedy, nucleus restriction, one generator per row."""

from __future__ import annotations

import pytest
import torch

from prmforge.policies.token_sampling import inverse_cdf, nucleus_probs, sample_next


def test_greedy_takes_the_arg_max_and_ignores_the_generator() -> None:
    logits = torch.tensor([[0.1, 2.0, 1.0], [3.0, 0.0, 3.0]])
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    assert sample_next(logits, [0.0, 0.0], [1.0, 1.0], gens) == [1, 0]  # a tie goes to the lowest id


def test_nucleus_keeps_the_smallest_set_reaching_top_p_including_the_crossing_token() -> None:
    probs_in = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs_in.log()
    kept = nucleus_probs(logits, 1.0, 0.7)  # 0.5 < 0.7, 0.5 + 0.3 crosses it: two tokens
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert torch.allclose(nucleus_probs(logits, 1.0, 0.5), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(nucleus_probs(logits, 1.0, 1.0), probs_in)


def test_temperature_scales_the_logits() -> None:
    logits = torch.tensor([0.0, 1.0])
    hot = nucleus_probs(logits, 2.0, 1.0)
    expected = torch.softmax(torch.tensor([0.0, 0.5]), dim=-1)
    assert torch.allclose(hot, expected)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nucleus_probs(logits, 0.0, 1.0)


def test_a_row_depends_only_on_its_own_generator() -> None:
    logits = torch.zeros((3, 50))
    alone = sample_next(logits[:1], [1.0], [1.0], [torch.Generator().manual_seed(7)])
    together = sample_next(
        logits, [1.0] * 3, [1.0] * 3, [torch.Generator().manual_seed(s) for s in (7, 8, 9)]
    )
    assert together[0] == alone[0]
    with pytest.raises(ValueError, match="one temperature, top_p and generator per row"):
        sample_next(logits, [1.0], [1.0], [torch.Generator()])


def test_inverse_cdf_picks_the_first_token_whose_cumulative_mass_exceeds_u() -> None:
    sorted_probs = torch.tensor([[0.5, 0.3, 0.2, 0.0], [2.0, 1.0, 1.0, 0.0]])  # row 2 sums to 4
    picks = inverse_cdf(sorted_probs, torch.tensor([0.49, 0.5]))
    assert picks.tolist() == [0, 1]  # 0.49 < 0.5; 0.5 * 4 = 2.0 is not below the first cdf 2.0
    assert inverse_cdf(sorted_probs, torch.tensor([0.8, 0.99])).tolist() == [2, 2]
    assert inverse_cdf(sorted_probs, torch.tensor([0.0, 0.0])).tolist() == [0, 0]


def test_sampling_draws_one_uniform_from_each_rows_generator() -> None:
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log().repeat(2, 1)
    seeds = (3, 4)
    expected = []
    for seed in seeds:
        u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
        expected.append(0 if u < 0.5 else 1 if u < 0.8 else 2)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    assert sample_next(logits, [1.0, 1.0], [1.0, 1.0], gens) == expected
    mixed = sample_next(logits, [0.0, 1.0], [1.0, 1.0], [torch.Generator(), torch.Generator().manual_seed(4)])
    assert mixed == [0, expected[1]]  # a greedy row beside a sampled one


def test_top_p_restricts_the_draw_to_the_nucleus() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    for seed in range(20):  # whatever u, only the top two tokens (mass 0.8 >= 0.7) can be drawn
        assert sample_next(logits, [1.0], [0.7], [torch.Generator().manual_seed(seed)])[0] in (0, 1)


def test_a_rows_draw_does_not_depend_on_a_neighbours_top_p() -> None:
    logits = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]]).log()
    alone = sample_next(logits[:1], [1.0], [1.0], [torch.Generator().manual_seed(9)])
    beside = sample_next(
        logits, [1.0, 1.0], [1.0, 0.5], [torch.Generator().manual_seed(9), torch.Generator()]
    )
    assert beside[0] == alone[0]
    assert beside[1] == 1  # top_p 0.5 keeps only the most probable token
