"""Compressive Transformer: how many slots a query sees, mean pooling, and a loss that trains only the compressor."""

import pytest
import torch

from memory_models.compressive import NEVER, Compressive

D_MODEL = 16


def make(**options) -> Compressive:
    torch.manual_seed(0)
    config = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "mem_len": 3, "cmem_len": 2, **options}
    return Compressive(**config).eval()


def expected_past(age: int, mem_len: int, cmem_len: int, rate: int) -> int:
    """Raw steps plus compressed groups [k c, (k + 1) c) of the episode a query at ``age`` sees."""
    raw = min(age, mem_len)
    slots = sum(1 for k in range(age) if mem_len < age - ((k + 1) * rate - 1) <= mem_len + cmem_len * rate)
    return raw + slots


@pytest.mark.parametrize("rate", [2, 3])
def test_a_query_sees_mem_len_raw_steps_and_cmem_len_slots(rate):
    model = make(compression_rate=rate)
    first = torch.zeros(1, 30, dtype=torch.bool)
    first[0, [0, 17]] = True
    state, sizes, expected = model.initial_state(1, "cpu"), [], []
    for step in range(30):
        _, state, record = model(torch.randn(1, 1, D_MODEL), state, first[:, step : step + 1])
        sizes.append(int(record.memory_size[0].item()))
        expected.append(expected_past(step if step < 17 else step - 17, 3, 2, rate))
    assert sizes == expected
    assert max(sizes) == 3 + 2  # the raw window and every slot are in use at once


def test_mean_pooling_of_groups_aligned_to_the_episode_start():
    model = make(compression_rate=2)
    x = torch.randn(2, 16, D_MODEL)
    first = torch.zeros(2, 16, dtype=torch.bool)
    first[:, [0, 5]] = True
    _, state, _ = model(x, model.initial_state(2, "cpu"), first)
    assert state.compressed_age.tolist() == [[5, 3]] * 2  # groups [9, 10] and [11, 12] of the episode at 5
    for slot, age in enumerate(state.compressed_age[0].tolist()):
        newest = 15 - age
        # layer 0 compresses the model inputs themselves
        torch.testing.assert_close(state.compressed[0][:, slot], x[:, newest - 1 : newest + 1].mean(1))


def test_empty_slots_are_marked_and_unseen():
    model = make()
    first = torch.ones(1, 4, dtype=torch.bool)  # every step starts an episode: no group ever completes
    _, state, record = model(torch.randn(1, 4, D_MODEL), model.initial_state(1, "cpu"), first)
    assert torch.all(state.compressed_age == NEVER) and torch.all(record.memory_size == 0)


def test_reconstruction_loss_trains_the_compressor_and_nothing_else():
    model = make(compression="conv", compression_rate=2)
    x, first = torch.randn(2, 14, D_MODEL), torch.zeros(2, 14, dtype=torch.bool)
    first[:, 0] = True
    out, _, record = model(x, model.initial_state(2, "cpu"), first)
    assert record.aux_loss > 0
    compressor = {id(p) for p in model.compressors.parameters()}
    record.aux_loss.backward(retain_graph=True)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad
        trained = parameter.grad is not None and bool(torch.any(parameter.grad != 0))
        assert trained == (id(parameter) in compressor), name
    model.zero_grad(set_to_none=True)
    out.pow(2).sum().backward()  # the task loss does not reach the compressor
    assert all(p.grad is None or torch.all(p.grad == 0) for p in model.compressors.parameters())


def test_mean_pooling_has_no_loss():
    model = make(compression="mean")
    first = torch.zeros(1, 14, dtype=torch.bool)
    first[:, 0] = True
    _, _, record = model(torch.randn(1, 14, D_MODEL), model.initial_state(1, "cpu"), first)
    assert record.aux_loss == 0 and model.compressors is None
