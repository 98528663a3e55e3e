"""The shared attention core: masks, eq. 4 renormalisation, relative positions, episode ages."""

import math

import pytest
import torch

from memory_models import attention as attention_core
from memory_models.attention import (
    RelativeMultiHeadAttention,
    TransformerLayer,
    contiguous_distance,
    episode_ages,
    visible,
)

D_MODEL, HEADS = 8, 2


def make(n_positions: int = 0) -> RelativeMultiHeadAttention:
    torch.manual_seed(0)
    attention = RelativeMultiHeadAttention(D_MODEL, HEADS, n_positions=n_positions)
    with torch.no_grad():
        attention.content_bias.normal_()
    return attention


def test_soft_mask_renormalises_as_eq_4():
    attention = make()
    query, context = torch.randn(2, 3, D_MODEL), torch.randn(2, 5, D_MODEL)
    soft = torch.rand(2, HEADS, 3, 5)
    soft[..., 0] = 0.0
    out = attention(query, context, soft_mask=soft)

    split = lambda t: t.view(*t.shape[:2], HEADS, -1).transpose(1, 2)  # noqa: E731
    q = split(attention.query(query))
    k, v = (split(t) for t in attention.key_value(context).chunk(2, -1))
    a = (((q + attention.content_bias[:, None]) @ k.transpose(-1, -2)) / math.sqrt(D_MODEL // HEADS)).softmax(-1)
    renormalised = soft * a / (soft * a).sum(-1, keepdim=True)  # a'_ti = m_ti a_ti / sum_j m_tj a_tj
    reference = attention.out((renormalised @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(out, reference)


@pytest.mark.parametrize("n_queries", [1, 5])
def test_folded_projections_equal_projected_keys_in_outputs_and_gradients(n_queries, monkeypatch):
    attention = make(n_positions=4)
    with torch.no_grad():
        attention.position_bias.normal_()
    query, context = torch.randn(2, n_queries, D_MODEL), torch.randn(2, 9, D_MODEL)
    distance = contiguous_distance(9 - n_queries, n_queries, "cpu")
    allowed = visible(distance, torch.tensor([[8] * n_queries, [2] * n_queries]))
    soft = torch.rand(2, 1, n_queries, 9)
    results = []
    for folded in (False, True):
        monkeypatch.setattr(attention, "_folds", lambda *_, folded=folded: folded)
        attention.zero_grad()
        q, c = query.clone().requires_grad_(), context.clone().requires_grad_()
        out = attention(q, c, distance, allowed, soft)
        out.pow(2).sum().backward()
        results.append([out, q.grad, c.grad, *(p.grad.clone() for p in attention.parameters())])
    for projected, folded in zip(*results, strict=True):
        torch.testing.assert_close(folded, projected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_memory, n_window, reach", [(6, 9, 4), (2, 9, 5), (0, 7, 3), (5, 4, 20)])
def test_query_blocks_hold_every_pair_a_query_may_see(n_memory, n_window, reach, monkeypatch):
    monkeypatch.setattr(attention_core, "MIN_QUERY_BLOCK", 1)
    n_keys = n_memory + n_window
    blocks = attention_core.query_blocks(n_window, n_keys, reach)
    covered = torch.zeros(n_window, n_keys, dtype=torch.int)
    for queries, keys in blocks:
        covered[queries, keys] += 1
    distance = contiguous_distance(n_memory, n_window, "cpu")[0]  # T x M
    seen = (distance >= 0) & (distance <= reach)
    assert torch.all(covered[seen] == 1)  # every visible pair once
    assert torch.cat([torch.arange(n_window)[queries] for queries, _ in blocks]).tolist() == list(range(n_window))
    assert covered.sum() < n_window * n_keys or len(blocks) == 1  # and fewer pairs than all


def test_attention_in_query_blocks_equals_one_block_in_outputs_and_gradients(monkeypatch):
    monkeypatch.setattr(attention_core, "MIN_QUERY_BLOCK", 1)
    attention = make(n_positions=4)
    with torch.no_grad():
        attention.position_bias.normal_()
    query, context = torch.randn(2, 7, D_MODEL), torch.randn(2, 12, D_MODEL)
    distance = contiguous_distance(5, 7, "cpu")  # 1 x T x M: one distance tensor for both rows
    allowed = visible(distance, torch.tensor([[9] * 7, [1, 2, 0, 1, 2, 3, 4]]), max_distance=4)
    soft = torch.rand(2, 1, 7, 12)
    results = []
    for reach in (4, None):
        attention.zero_grad()
        q, c = query.clone().requires_grad_(), context.clone().requires_grad_()
        out = attention(q, c, distance, allowed, soft, reach=reach)
        out.pow(2).sum().backward()
        results.append([out, q.grad, c.grad, *(p.grad.clone() for p in attention.parameters())])
    for blocked, whole in zip(*results, strict=True):
        torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6)


def test_folding_is_chosen_for_one_step_over_a_long_cache_only():
    attention = RelativeMultiHeadAttention(64, 4)
    assert attention._folds(1, 80)  # acting: one query, a cache of 80 steps
    assert not attention._folds(100, 180)  # learning: a 100-step window over the same cache


def test_a_query_with_nothing_to_see_outputs_zeros_and_finite_gradients():
    attention = make(n_positions=4)
    query = torch.randn(1, 3, D_MODEL, requires_grad=True)
    context = torch.randn(1, 4, D_MODEL, requires_grad=True)
    allowed = torch.ones(1, 3, 4, dtype=torch.bool)
    allowed[0, 0] = False  # query 0 may see nothing
    soft = torch.ones(1, 1, 3, 4)
    soft[0, 0, 1] = 0.0  # query 1 may see keys, but the soft mask zeroes them all
    out = attention(query, context, contiguous_distance(1, 3, "cpu"), allowed, soft)
    assert torch.all(out[0, :2] == 0) and torch.all(out[0, 2] != 0)
    out.sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(context.grad).all()


def test_keys_beyond_n_positions_get_no_position_term():
    attention = make(n_positions=3)
    with torch.no_grad():
        attention.position_bias.normal_()
    query, context = torch.randn(2, 2, D_MODEL), torch.randn(2, 4, D_MODEL)
    without = attention(query, context)
    far = attention(query, context, torch.tensor([[[3, 4, 5, 9], [4, 3, 7, 3]]]))
    near = attention(query, context, torch.tensor([[[0, 1, 2, 9], [1, 0, 2, 3]]]))
    torch.testing.assert_close(far, without)
    assert not torch.allclose(near, without)


def test_hidden_keys_get_exactly_zero_gradient():
    attention = make(n_positions=4)
    context = torch.randn(1, 4, D_MODEL, requires_grad=True)
    allowed = torch.tensor([[[True, False, True, True]]])
    soft = torch.tensor([[[[1.0, 1.0, 0.0, 0.5]]]])
    attention(torch.randn(1, 1, D_MODEL), context, torch.tensor([[[3, 2, 1, 0]]]), allowed, soft).sum().backward()
    assert (context.grad[0].abs().sum(-1) > 0).tolist() == [True, False, False, True]


def test_episode_ages_restart_at_first_and_continue_the_carried_age():
    first = torch.tensor([[False, False, True, False], [True, False, False, True], [False] * 4])
    ages = episode_ages(first, torch.tensor([4, 9, -1]))
    assert ages.tolist() == [[5, 6, 0, 1], [0, 1, 2, 0], [0, 1, 2, 3]]
    distance = contiguous_distance(2, 4, "cpu")  # 1 x 4 x 6
    allowed = visible(distance, ages, max_distance=2)
    assert allowed[0, 2].tolist() == [False, False, False, False, True, False]  # only itself
    assert allowed[0, 1].tolist() == [False, True, True, True, False, False]  # reach 2, not the future
    assert allowed[2, 1].tolist() == [False, False, True, True, False, False]  # nothing before the start


def test_post_norm_layer_normalises_its_output():
    torch.manual_seed(0)
    layer = TransformerLayer(D_MODEL, HEADS, n_positions=4, pre_norm=False)
    x = 5 * torch.randn(2, 3, D_MODEL)
    distance = contiguous_distance(0, 3, "cpu")
    out = layer(x, x, distance, visible(distance, torch.full((2, 3), 9)))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
