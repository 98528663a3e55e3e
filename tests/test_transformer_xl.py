"""Transformer-XL: segment recurrence equals one causal pass, and the cache reaches exactly mem_len back."""

import torch

import memory_models
from tests.conftest import readout

D_MODEL = 16


def make(mem_len: int, n_layers: int = 2) -> memory_models.MemoryModel:
    torch.manual_seed(0)
    return memory_models.build("transformer_xl", d_model=D_MODEL, n_layers=n_layers, n_heads=2, mem_len=mem_len).eval()


def one_episode(batch: int, steps: int) -> torch.Tensor:
    first = torch.zeros(batch, steps, dtype=torch.bool)
    first[:, 0] = True
    return first


def test_segmented_run_with_a_long_cache_equals_one_causal_run():
    model = make(mem_len=12)
    x, first = torch.randn(2, 12, D_MODEL), one_episode(2, 12)
    whole, _, _ = model(x, model.initial_state(2, "cpu"), first)
    state, segments = model.initial_state(2, "cpu"), []
    for begin in range(0, 12, 4):
        out, state, _ = model(x[:, begin : begin + 4], state, first[:, begin : begin + 4])
        segments.append(out)
    torch.testing.assert_close(torch.cat(segments, 1), whole, atol=1e-5, rtol=1e-5)


def test_a_query_reaches_exactly_mem_len_steps_back():
    model = make(mem_len=3, n_layers=1)
    x = torch.randn(1, 10, D_MODEL, requires_grad=True)
    state = model.initial_state(1, "cpu")
    _, state, _ = model(x[:, :4], state, one_episode(1, 4))
    out, _, _ = model(x[:, 4:], state.detach(), torch.zeros(1, 6, dtype=torch.bool))
    (grad,) = torch.autograd.grad(readout(out[0, 4]), x)  # the query at step 8
    assert (grad[0].abs().sum(-1) > 0).tolist() == [False] * 5 + [True] * 4 + [False]
    changed = state.memory[0].clone()
    changed[:, -1] += torch.randn(D_MODEL)  # step 3: one step farther back than the query at step 7 reaches
    out_changed, _, _ = model(x[:, 4:], type(state)([changed], state.episode_age), torch.zeros(1, 6, dtype=torch.bool))
    assert not torch.allclose(out_changed[0, 2], out[0, 2]) and torch.equal(out_changed[0, 3:], out[0, 3:])


def test_cache_holds_the_last_layer_inputs_without_gradient():
    model = make(mem_len=3)
    x = torch.randn(2, 7, D_MODEL, requires_grad=True)
    _, state, record = model(x, model.initial_state(2, "cpu"), one_episode(2, 7))
    assert torch.equal(state.memory[0], x[:, -3:].detach())  # layer 0's inputs are the model inputs
    assert not any(m.requires_grad for m in state.memory)
    assert state.memory[1].shape == (2, 3, D_MODEL)


def test_memory_size_counts_the_attendable_past():
    model = make(mem_len=3)
    state, sizes = model.initial_state(1, "cpu"), []
    first = one_episode(1, 6)
    first[0, 4] = True  # a new episode at step 4
    for step in range(6):
        _, state, record = model(torch.randn(1, 1, D_MODEL), state, first[:, step : step + 1])
        sizes.append(record.memory_size[0].item())
    assert sizes == [0, 1, 2, 3, 0, 1]
