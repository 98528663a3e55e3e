"""Memformer's memory rules and memory replay back-propagation against plain BPTT."""

import pytest
import torch

import memory_models
from memory_models.mrbp import Segment, memory_replay_backward
from tests.conftest import readout

D_MODEL, SLOTS, SEGMENT = 16, 3, 4


def _model(dtype: torch.dtype = torch.float32, dropout: float = 0.0) -> memory_models.MemoryModel:
    torch.manual_seed(0)
    model = memory_models.build(
        "memformer", d_model=D_MODEL, n_layers=2, n_heads=2, dropout=dropout, num_slots=SLOTS, segment_len=SEGMENT
    )
    return model.to(dtype)


def test_a_slot_update_ignores_the_other_slots():
    model = _model(torch.float64)
    batch = 2
    memory = torch.randn(batch, 2, SLOTS, D_MODEL, dtype=torch.float64)
    outputs = [torch.randn(batch, SEGMENT, D_MODEL, dtype=torch.float64) for _ in range(2)]
    segment = torch.ones(batch, SEGMENT, dtype=torch.bool)
    written = model.write_memory(memory, outputs, segment)
    for j in range(SLOTS):
        perturbed = memory.clone()
        perturbed[:, :, j] += torch.randn(batch, 2, D_MODEL, dtype=torch.float64)
        rewritten = model.write_memory(perturbed, outputs, segment)
        others = [k for k in range(SLOTS) if k != j]
        torch.testing.assert_close(rewritten[:, :, others], written[:, :, others], rtol=0, atol=1e-12)
        assert (rewritten[:, :, j] - written[:, :, j]).abs().amin() > 1e-6


def test_the_write_sees_only_the_segment_it_completes():
    model = _model(torch.float64)
    memory = torch.randn(1, 2, SLOTS, D_MODEL, dtype=torch.float64)
    outputs = [torch.randn(1, SEGMENT + 3, D_MODEL, dtype=torch.float64) for _ in range(2)]
    segment = torch.zeros(1, SEGMENT + 3, dtype=torch.bool)
    segment[:, 2 : 2 + SEGMENT] = True
    changed = [o.clone() for o in outputs]
    for o in changed:
        o[~segment] = torch.randn(3, D_MODEL, dtype=torch.float64)
    written = model.write_memory(memory, outputs, segment)
    torch.testing.assert_close(model.write_memory(memory, changed, segment), written, rtol=0, atol=1e-12)


@pytest.mark.parametrize("restart_first_step", [False, True])
def test_gradients_reach_the_initial_memory_and_early_inputs(restart_first_step):
    model = _model()
    batch, n_steps = 2, 3 * SEGMENT
    x = torch.randn(batch, n_steps, D_MODEL, requires_grad=True)
    first = torch.zeros(batch, n_steps, dtype=torch.bool)
    first[:, 0] = restart_first_step
    out, _, _ = model(x, model.initial_state(batch, "cpu"), first)
    readout(out[:, -1]).backward()  # the last step sees the first segment only through memory
    assert model.initial_memory.grad.abs().sum() > 0
    assert x.grad[:, :SEGMENT].abs().amin(dim=-1).gt(0).all()


def test_an_episode_start_inside_a_segment_restarts_the_memory():
    model = _model(torch.float64)
    batch, n_steps, start = 2, 3 * SEGMENT + 1, SEGMENT + 2
    x = torch.randn(batch, n_steps, D_MODEL, dtype=torch.float64)
    first = torch.zeros(batch, n_steps, dtype=torch.bool)
    first[:, start] = True
    state = model.initial_state(batch, "cpu")
    out, next_state, _ = model(x, state, first)

    other_past = x.clone()
    other_past[:, :start] = torch.randn(batch, start, D_MODEL, dtype=torch.float64)
    other_state = state.apply(lambda t: t + torch.randn_like(t) if t.is_floating_point() else t)
    other_out, other_next, _ = model(other_past, other_state, first)
    torch.testing.assert_close(other_out[:, start:], out[:, start:], rtol=0, atol=1e-12)
    torch.testing.assert_close(other_next.memory, next_state.memory, rtol=0, atol=1e-12)
    assert (other_out[:, :start] - out[:, :start]).abs().amax() > 1e-6


@pytest.mark.parametrize("chunks", [[1] * 11, [3, 6, 2], [11]])
def test_any_cut_into_calls_gives_the_same_outputs(chunks):
    model = _model()
    batch, n_steps = 3, sum(chunks)
    x = torch.randn(batch, n_steps, D_MODEL)
    first = torch.rand(batch, n_steps) < 0.2
    state = model.initial_state(batch, "cpu")
    whole, whole_state, whole_record = model(x, state, first)
    outs, start = [], 0
    for length in chunks:
        out, state, _ = model(x[:, start : start + length], state, first[:, start : start + length])
        outs.append(out)
        start += length
    torch.testing.assert_close(torch.cat(outs, 1), whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(state.memory, whole_state.memory, rtol=0, atol=1e-5)
    assert whole_record.memory_size.shape == (2,) and (whole_record.memory_size >= SLOTS).all()


def test_aligned_segments_skip_the_second_pass_and_change_nothing():
    """Every row writes at each chunk's last step: the windowed call skips the pass for steps after a write."""
    model = _model()
    x = torch.randn(2, 4 * SEGMENT, D_MODEL)
    first = torch.zeros(2, 4 * SEGMENT, dtype=torch.bool)
    first[:, 0] = True
    calls = []
    original = model._layers
    model._layers = lambda *args: calls.append(1) or original(*args)
    windowed, windowed_state, _ = model(x, model.initial_state(2, "cpu"), first)
    assert len(calls) == 4  # one pass per chunk
    state, stepped = model.initial_state(2, "cpu"), []
    for t in range(4 * SEGMENT):
        out, state, _ = model(x[:, t : t + 1], state, first[:, t : t + 1])
        stepped.append(out)
    torch.testing.assert_close(torch.cat(stepped, 1), windowed, rtol=0, atol=1e-5)
    torch.testing.assert_close(state.memory, windowed_state.memory, rtol=0, atol=1e-5)


def _bptt(model, state, segments):
    total, states = 0.0, state
    for segment in segments:
        out, states, record = model(segment.x, states, segment.first)
        total = total + segment.loss_fn(out, record)
    total.backward()
    return total.detach(), states.detach()


def test_mrbp_gradients_equal_bptt_gradients():
    model = _model(torch.float64, dropout=0.1).train()
    head = torch.nn.Linear(D_MODEL, 5).double()
    batch, n_segments, length = 3, 4, SEGMENT + 2  # segments not aligned with the memory writes
    generator = torch.Generator().manual_seed(1)
    segments = []
    for _ in range(n_segments):
        x = torch.randn(batch, length, D_MODEL, dtype=torch.float64, generator=generator)
        first = torch.rand(batch, length, generator=generator) < 0.15
        target = torch.randint(0, 5, (batch, length), generator=generator)

        def loss_fn(out, record, target=target):
            return torch.nn.functional.cross_entropy(head(out).flatten(0, 1), target.flatten()) + record.aux_loss

        segments.append(Segment(x, first, loss_fn))
    assert any(s.first.any() for s in segments)

    params = list(model.parameters()) + list(head.parameters())
    torch.manual_seed(2)
    loss, state = _bptt(model, model.initial_state(batch, "cpu"), segments)
    reference = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    torch.manual_seed(2)
    result = memory_replay_backward(model, model.initial_state(batch, "cpu"), segments)

    torch.testing.assert_close(result.loss, loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.state.memory, state.memory, rtol=0, atol=1e-12)
    assert model.initial_memory.grad.abs().sum() > 0
    for p, expected in zip(params, reference, strict=True):
        torch.testing.assert_close(p.grad, expected, rtol=1e-9, atol=1e-12)
