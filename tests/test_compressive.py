"""Compressive Transformer: what a query sees (every step within reach, raw or compressed), mean pooling, and a
reconstruction loss for every stored group that trains only the compressor."""

import pytest
import torch

from memory_models.compressive import NEVER, Compressive

D_MODEL = 16


def make(n_layers: int = 2, **options) -> Compressive:
    torch.manual_seed(0)
    config = {"d_model": D_MODEL, "n_layers": n_layers, "n_heads": 2, "mem_len": 3, "cmem_len": 2, **options}
    return Compressive(**config).eval()


def expected_past(age: int, mem_len: int, cmem_len: int, rate: int) -> int:
    """Earlier steps seen raw (their group's newest, (k // c + 1) c - 1, at most mem_len back) plus the slots of
    the groups [k c, (k + 1) c) whose newest is farther, up to mem_len + c cmem_len back."""
    newest = [(step // rate + 1) * rate - 1 for step in range(age)]
    raw = sum(1 for n in newest if age - n <= mem_len)
    slots = len({n for n in newest if mem_len < age - n <= mem_len + cmem_len * rate})
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
    assert max(sizes) == 3 + rate - 1 + 2  # a whole group just behind mem_len, raw, and every slot in use at once


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


@pytest.mark.parametrize("compression", ["mean", "conv"])
@pytest.mark.parametrize(("n_layers", "rate"), [(1, 2), (1, 4), (2, 3)])
def test_an_output_depends_on_every_step_of_its_episode_within_reach(n_layers, rate, compression):
    """Perturbing any step at most mem_len + c * cmem_len before a query changes that query's output
    (with mem_len 3 and c 4, a rule that hid a group's members until the whole group left mem_len ignored
    step 8 at step 12)."""
    model = make(n_layers=n_layers, compression_rate=rate, compression=compression)
    reach = 3 + 2 * rate
    x, first = torch.randn(1, 22, D_MODEL), torch.zeros(1, 22, dtype=torch.bool)
    first[0, 0] = True

    def run(inputs: torch.Tensor) -> torch.Tensor:
        state, outs, begin = model.initial_state(1, "cpu"), [], 0
        for steps in [1, 4, 2, 1, 6, 3, 5]:
            out, state, _ = model(inputs[:, begin : begin + steps], state, first[:, begin : begin + steps])
            outs.append(out)
            begin += steps
        return torch.cat(outs, 1)[0]  # T x D

    reference = run(x)
    for step in range(22):
        changed = x.clone()
        changed[0, step] += torch.randn(D_MODEL)
        moved = (run(changed) - reference).abs().amax(-1) > 1e-6  # T: the outputs the change reached
        for query in range(step, min(step + reach + 1, 22)):
            assert moved[query], f"the output at step {query} ignores step {step}"


@pytest.mark.parametrize("calls", [[1] * 24, [2] * 12, [5, 1, 3, 1, 1, 7, 6], [24]])
def test_every_stored_group_gets_the_reconstruction_loss_once(calls, monkeypatch):
    """Over any cut into calls, one-step calls included: the groups given the reconstruction loss in a call
    are the groups it stores, and over the sequence they are every group whose slot a later query sees."""
    model = make(compression="conv", compression_rate=3, cmem_len=10)  # room for every group: none dropped
    original = Compressive._reconstruction_loss
    given = []  # per call and layer: how many groups got the loss

    def recording(layer, h, context, raw_mask, slots, slot_mask):
        given.append(int(slot_mask.sum()))
        return original(layer, h, context, raw_mask, slots, slot_mask)

    monkeypatch.setattr(Compressive, "_reconstruction_loss", staticmethod(recording))
    x, first = torch.randn(1, 24, D_MODEL), torch.zeros(1, 24, dtype=torch.bool)
    first[0, 0] = True
    state, begin, total_loss = model.initial_state(1, "cpu"), 0, 0.0
    for steps in calls:
        stored_before = int((state.compressed_age < NEVER).sum())
        _, state, record = model(x[:, begin : begin + steps], state, first[:, begin : begin + steps])
        stored_now = int((state.compressed_age < NEVER).sum()) - stored_before
        assert given[-2:] == [stored_now] * 2  # both layers, the groups this call stored
        assert (record.aux_loss > 0) == (stored_now > 0)
        total_loss = total_loss + record.aux_loss
        begin += steps
    # groups [3k, 3k + 3) whose newest step lies more than mem_len before step 24, the next query
    assert sum(given) / 2 == sum(1 for k in range(8) if 24 - (3 * k + 2) > 3) == 7
    total_loss.backward()
    assert all(torch.any(p.grad != 0) for p in model.compressors.parameters())
