"""Invariants every memory model keeps: causality, no leak across episodes, independence from how a
sequence is cut into calls, and a state that detaches, splits by rows, moves and saves."""

import io

import pytest
import torch

import memory_models
from memory_models import MODEL_NAMES, attention
from memory_models.base import MemoryState
from tests.conftest import readout

D_MODEL = 16
# Memories small enough that eviction, expiry and compression all happen within a few steps.
CONFIGS = {
    "none": {},
    "lstm": {},
    "gru": {},
    "transformer_xl": {"mem_len": 3},
    "expire_span": {"max_span": 6, "ramp": 2, "init_bias": 0.0, "pos_len": 4, "shorten": True},
    "adaptive_span": {"max_span": 6, "ramp": 2, "init_span": 0.5},
    "compressive": {"mem_len": 3, "cmem_len": 2, "compression_rate": 2, "compression": "conv"},
    "memformer": {"num_slots": 3, "segment_len": 4},
}
# Every model with its test options, plus the variants whose memory policy differs: case -> (name, options).
CASES = {name: (name, options) for name, options in CONFIGS.items()} | {
    "expire_span_fixed_cache": ("expire_span", {**CONFIGS["expire_span"], "compact": False}),
}


def make_model(case: str) -> memory_models.MemoryModel:
    name, options = CASES[case]
    torch.manual_seed(0)
    model = memory_models.build(name, d_model=D_MODEL, n_layers=2, n_heads=2, dropout=0.0, **options)
    with torch.no_grad():  # move zero-initialised parameters (span predictors, biases) off their start
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval()


def random_first(batch: int, steps: int, p: float = 0.25, start: bool = False) -> torch.Tensor:
    first = torch.rand(batch, steps) < p
    first[:, 0] |= start
    return first


def warm_state(model: memory_models.MemoryModel, batch: int, steps: int = 7) -> MemoryState:
    """A state full of memory: the model has run a random prefix."""
    state = model.initial_state(batch, "cpu")
    _, state, _ = model(torch.randn(batch, steps, D_MODEL), state, random_first(batch, steps, start=True))
    return state


@pytest.mark.parametrize("name", CASES)
def test_changing_a_step_changes_no_earlier_output(name):
    model = make_model(name)
    state = warm_state(model, batch=2)
    x, first = torch.randn(2, 8, D_MODEL), random_first(2, 8)
    changed = x.clone()
    changed[:, 5] += torch.randn(2, D_MODEL)
    out, _, _ = model(x, state, first)
    out_changed, _, _ = model(changed, state, first)
    assert torch.equal(out[:, :5], out_changed[:, :5])
    assert not torch.allclose(out[:, 5], out_changed[:, 5])


@pytest.mark.parametrize("name", CASES)
def test_an_episode_sees_nothing_of_the_one_before(name):
    model = make_model(name)
    starts = [0, 2, 4, 7]  # where episode B begins in each row of the window
    prefix = torch.randn(4, 7, D_MODEL, requires_grad=True)
    state = model.initial_state(4, "cpu")
    _, state, _ = model(prefix, state, random_first(4, 7, start=True))
    x = torch.randn(4, 10, D_MODEL, requires_grad=True)
    first = torch.zeros(4, 10, dtype=torch.bool)
    first[torch.arange(4), starts] = True
    first[:, 8] = True  # B lasts until step 8, where a third episode begins
    out, _, _ = model(x, state, first)

    b_outputs = torch.cat([out[row, start:8] for row, start in enumerate(starts)])
    readout(b_outputs).backward()
    for row, start in enumerate(starts):
        assert torch.all(x.grad[row, :start] == 0), f"row {row}: B's outputs depend on episode A"
        alone_first = torch.zeros(1, 8 - start, dtype=torch.bool)
        alone_first[0, 0] = True
        alone, _, _ = model(x[row : row + 1, start:8], model.initial_state(1, "cpu"), alone_first)
        torch.testing.assert_close(out[row, start:8], alone[0], atol=1e-5, rtol=1e-5)
    assert prefix.grad is None or torch.all(prefix.grad == 0)


@pytest.mark.parametrize("name", CASES)
def test_step_by_step_equals_windowed(name):
    model = make_model(name)
    x = torch.randn(3, 15, D_MODEL)
    first = random_first(3, 15, start=True)
    windowed, stepped = [], []
    state = model.initial_state(3, "cpu")
    for begin in range(0, 15, 5):
        out, state, _ = model(x[:, begin : begin + 5], state, first[:, begin : begin + 5])
        windowed.append(out)
    state = model.initial_state(3, "cpu")
    for step in range(15):
        out, state, _ = model(x[:, step : step + 1], state, first[:, step : step + 1])
        stepped.append(out)
    torch.testing.assert_close(torch.cat(stepped, 1), torch.cat(windowed, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["transformer_xl", "adaptive_span", "expire_span_fixed_cache"])
def test_query_blocks_change_no_output_state_loss_or_gradient(name, monkeypatch):
    """Models that promise a reach (Transformer-XL, Adaptive-Span, Expire-Span's fixed cache) are attended in
    blocks of queries; blocks of 2 queries here, against all queries in one block."""
    model = make_model(name).train()
    state = model.begin_window(warm_state(model, batch=3).detach())  # Expire-Span: a shortening per row
    x, first = torch.randn(3, 9, D_MODEL), random_first(3, 9)
    monkeypatch.setattr(attention, "MIN_QUERY_BLOCK", 2)
    results = []
    for blocks in (attention.query_blocks, lambda n_queries, n_keys, reach: [(slice(None), slice(None))]):
        monkeypatch.setattr(attention, "query_blocks", blocks)
        model.zero_grad()
        inputs = x.clone().requires_grad_()
        out, next_state, record = model(inputs, state, first)
        (readout(out) + record.aux_loss).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        results.append([out, inputs.grad, record.aux_loss, record.memory_size, *next_state.tensors(), *grads])
    for blocked, whole in zip(*results, strict=True):
        torch.testing.assert_close(blocked, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_record_has_the_documented_shapes(name):
    model = make_model(name)
    out, _, record = model(torch.randn(2, 4, D_MODEL), warm_state(model, 2), random_first(2, 4))
    assert out.shape == (2, 4, D_MODEL)
    assert record.aux_loss.shape == () and record.memory_size.shape == (model.n_layers,)
    assert record.spans is None or record.spans.shape == (model.n_layers, 2, 4)
    assert torch.all(record.memory_size >= 0)


@pytest.mark.parametrize("name", CASES)
def test_state_detaches_splits_by_rows_and_round_trips_through_torch_save(name):
    model = make_model(name)
    x = torch.randn(3, 5, D_MODEL, requires_grad=True)
    _, state, _ = model(x, model.initial_state(3, "cpu"), random_first(3, 5, start=True))
    assert not any(t.requires_grad for t in state.detach().tensors())
    state = state.detach().to("cpu")

    nxt, first = torch.randn(3, 4, D_MODEL), random_first(3, 4)
    out, _, _ = model(nxt, state, first)
    picked, _, _ = model(nxt[[2, 0]], state.rows(torch.tensor([2, 0])), first[[2, 0]])
    torch.testing.assert_close(picked, out[[2, 0]], atol=1e-6, rtol=1e-6)

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is type(state)
    resumed, _, _ = model(nxt, loaded, first)
    assert torch.equal(resumed, out)


@pytest.mark.parametrize("name", [case for case in CASES if make_model(case).static_state])
def test_a_static_state_keeps_its_shapes_whatever_the_window(name):
    """What ``static_state`` promises CUDA graph capture: every call returns a state shaped like its input."""
    model = make_model(name)
    state = model.initial_state(3, "cpu")
    shapes = [t.shape for t in state.tensors()]
    for steps in (1, 4, 1, 9, 2):
        _, state, _ = model(torch.randn(3, steps, D_MODEL), state, random_first(3, steps))
        assert [t.shape for t in state.tensors()] == shapes


def test_every_registered_model_is_tested():
    assert set(CONFIGS) == set(MODEL_NAMES)


def test_every_model_but_the_compacting_ones_has_a_static_state():
    dynamic = {case for case in CASES if not make_model(case).static_state}
    assert dynamic == {"expire_span", "adaptive_span"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", CASES)
def test_cuda_matches_cpu(name):
    model = make_model(name)
    x, first = torch.randn(2, 6, D_MODEL), random_first(2, 6, start=True)
    out, state, _ = model(x, model.initial_state(2, "cpu"), first)
    out, _, _ = model(x, state, first)
    cuda_model = model.to("cuda")
    cuda_out, cuda_state, _ = cuda_model(x.cuda(), cuda_model.initial_state(2, "cuda"), first.cuda())
    cuda_out, _, _ = cuda_model(x.cuda(), cuda_state, first.cuda())
    assert all(t.device.type == "cuda" for t in cuda_state.tensors())
    torch.testing.assert_close(cuda_out.cpu(), out, atol=1e-4, rtol=1e-4)
