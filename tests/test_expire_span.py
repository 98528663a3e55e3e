"""Expire-Span: the mask, its loss, physical removal of expired memories and the cache bound."""

import math

import torch

import memory_models
from memory_models.expire_span import ExpireSpan, expire_mask, ramp_loss
from tests.conftest import readout

D_MODEL = 16


def make(n_layers: int = 1, **options) -> ExpireSpan:
    torch.manual_seed(0)
    config = {"max_span": 6, "ramp": 2, "pos_len": 4, **options}
    return memory_models.build("expire_span", d_model=D_MODEL, n_layers=n_layers, n_heads=2, **config).eval()


def fixed_span(model: ExpireSpan, span: float) -> None:
    """Every memory gets the same span: w = 0 and b = logit(span / L)."""
    with torch.no_grad():
        for predictor in model.span_predictors:
            predictor.weight.zero_()
            predictor.bias.fill_(math.log(span / (model.max_span - span)) / model.logit_scale)


def one_episode(batch: int, steps: int) -> torch.Tensor:
    first = torch.zeros(batch, steps, dtype=torch.bool)
    first[:, 0] = True
    return first


def test_mask_is_one_within_the_span_then_ramps_to_zero_at_span_plus_ramp():
    spans = torch.tensor([[2.5, 0.0]])  # B x M
    distance = torch.arange(7).view(1, 7, 1).expand(1, 7, 2)  # B x T x M
    mask = expire_mask(spans, distance, ramp=2)
    torch.testing.assert_close(mask[0, :, 0], torch.tensor([1, 1, 1, 0.75, 0.25, 0, 0]))
    torch.testing.assert_close(mask[0, :, 1], torch.tensor([1, 0.5, 0, 0, 0, 0, 0]))


def test_a_memory_is_fully_masked_once_t_minus_i_reaches_span_plus_ramp():
    model = make()
    fixed_span(model, 2.5)  # e + R = 4.5: steps 1..4 back are seen, 5 and more are not
    x = torch.randn(1, 10, D_MODEL, requires_grad=True)
    out, _, record = model(x, model.initial_state(1, "cpu"), one_episode(1, 10))
    (grad,) = torch.autograd.grad(readout(out[0, 8]), x)
    assert (grad[0].abs().sum(-1) > 0).tolist() == [False] * 4 + [True] * 5 + [False]
    torch.testing.assert_close(record.spans, torch.full((1, 1, 10), 2.5))


def test_removing_expired_memories_does_not_change_outputs():
    class KeepEverything(ExpireSpan):
        def keeps(self, last_distance, spans, episode_age):
            return torch.ones_like(last_distance, dtype=torch.bool)

    config = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "max_span": 6, "ramp": 2, "pos_len": 4}
    pruned, kept = ExpireSpan(**config, init_bias=0.0).eval(), KeepEverything(**config).eval()
    with torch.no_grad():  # spread the spans so that memories expire at different times
        for predictor in pruned.span_predictors:
            predictor.weight.copy_(torch.linspace(-1, 1, D_MODEL))
    kept.load_state_dict(pruned.state_dict())
    first = torch.rand(3, 24) < 0.1
    first[:, 0] = True
    x = torch.randn(3, 24, D_MODEL)
    pruned_state, kept_state = pruned.initial_state(3, "cpu"), kept.initial_state(3, "cpu")
    for begin in range(0, 24, 4):
        window = slice(begin, begin + 4)
        out, pruned_state, _ = pruned(x[:, window], pruned_state, first[:, window])
        out_kept, kept_state, _ = kept(x[:, window], kept_state, first[:, window])
        torch.testing.assert_close(out, out_kept, atol=1e-5, rtol=1e-5)
    assert kept_state.memory[0].shape[1] == 24 and pruned_state.memory[0].shape[1] < 24


def test_a_fixed_cache_gives_the_outputs_and_losses_of_a_compacted_one():
    config = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "max_span": 6, "ramp": 2, "pos_len": 4}
    compacted, fixed = ExpireSpan(**config).eval(), ExpireSpan(**config, compact=False).eval()
    with torch.no_grad():  # spread the spans so that memories expire at different times
        for predictor in compacted.span_predictors:
            predictor.weight.copy_(torch.linspace(-1, 1, D_MODEL))
    fixed.load_state_dict(compacted.state_dict())
    first = torch.rand(3, 30) < 0.1
    x = torch.randn(3, 30, D_MODEL)
    compacted_state, fixed_state = compacted.initial_state(3, "cpu"), fixed.initial_state(3, "cpu")
    begin = 0
    for steps in [1, 4, 2, 9, 1, 6, 7]:
        window = slice(begin, begin + steps)
        out, compacted_state, record = compacted(x[:, window], compacted_state, first[:, window])
        out_fixed, fixed_state, record_fixed = fixed(x[:, window], fixed_state, first[:, window])
        torch.testing.assert_close(out_fixed, out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(record_fixed.aux_loss, record.aux_loss)
        torch.testing.assert_close(record_fixed.memory_size, record.memory_size)
        assert [m.shape[1] for m in fixed_state.memory] == [fixed.max_span + fixed.ramp - 1] * 2
        begin += steps
    assert max(m.shape[1] for m in compacted_state.memory) < fixed.max_span + fixed.ramp - 1


def test_span_loss_reaches_only_memories_inside_the_ramp():
    spans = torch.tensor([[0.5, 2.5, 6.0, 1.0]], requires_grad=True)  # B x M
    distance = torch.tensor([[[3, 3, 3, 3]]])  # one query, every memory 3 steps back
    allowed = torch.tensor([[[True, True, True, False]]])  # the last one lies in another episode
    mask = expire_mask(spans, distance, ramp=2)  # 0, 0.75, 1, 0.5
    ramp_loss(spans, mask, allowed, ramp=2).backward()
    torch.testing.assert_close(spans.grad, torch.tensor([[0.0, 0.5, 0.0, 0.0]]))


def test_span_loss_is_applied_while_a_query_sees_the_memory_in_the_ramp():
    model = make(loss_coef=1.0)
    fixed_span(model, 2.5)  # memories 3 and 4 steps back are in the ramp
    state, losses, sizes, first = model.initial_state(1, "cpu"), [], [], one_episode(1, 6)
    for step in range(6):
        _, state, record = model(torch.randn(1, 1, D_MODEL), state, first[:, step : step + 1])
        losses.append(record.aux_loss.item())
        sizes.append(record.memory_size[0].item())
    per_memory = 2.5 / 2  # e / R
    torch.testing.assert_close(torch.tensor(losses), torch.tensor([0, 0, 0, 1, 2, 2]) * per_memory)
    assert sizes == [0, 1, 2, 3, 4, 4]  # |C_t|: the memories with a mask above zero
    record.aux_loss.backward()
    assert model.span_predictors[0].bias.grad.abs() > 0


def test_cache_never_exceeds_max_span_plus_ramp_even_with_every_span_near_max():
    model = make(n_layers=2, init_bias=30.0)  # sigmoid(30) = 1: every span is L
    state, lengths = model.initial_state(2, "cpu"), []
    first = torch.zeros(2, 40, dtype=torch.bool)
    first[:, 0] = True
    x = torch.randn(2, 40, D_MODEL)
    begin = 0
    for steps in [1, 3, 7, 2, 9, 1, 5, 12]:
        _, state, record = model(x[:, begin : begin + steps], state, first[:, begin : begin + steps])
        begin += steps
        lengths += [memory.shape[1] for memory in state.memory]
        assert torch.all(record.spans > model.max_span - 1e-3)
    assert max(lengths) == model.max_span + model.ramp - 1


def test_random_shortening_only_in_training():
    model = make(init_bias=30.0, shorten=True)
    x, first = torch.randn(2, 12, D_MODEL), one_episode(2, 12)
    _, state, _ = model(x, model.initial_state(2, "cpu"), first)
    window, no_start = torch.randn(2, 4, D_MODEL), torch.zeros(2, 4, dtype=torch.bool)
    out, _, record = model(window, state, no_start)
    again, _, _ = model(window, state, no_start)
    assert torch.equal(out, again)
    model.train()
    unshortened = model(window, state, no_start)[2]  # no begin_window: no draw, nothing hidden
    assert torch.equal(unshortened.memory_size, record.memory_size)
    shortened_state = model.begin_window(state)
    assert torch.all(shortened_state.shorten_to < model.max_span)
    _, next_state, train_record = model(window, shortened_state, no_start)
    assert train_record.memory_size[0] < record.memory_size[0]  # l < L hides keys L - 1 steps back
    assert torch.equal(next_state.shorten_to, shortened_state.shorten_to)  # the draw lasts the window
    assert model.eval().begin_window(shortened_state) is shortened_state


def test_stable_form_divides_the_logit_by_the_ramp():
    plain, stable = make(init_bias=-1.0), make(init_bias=-1.0, stable_spans=True)
    x, first = torch.randn(1, 3, D_MODEL), one_episode(1, 3)
    initial = 6 * torch.sigmoid(torch.tensor(-1.0))
    for model in (plain, stable):  # the same initial spans in both forms
        torch.testing.assert_close(model(x, model.initial_state(1, "cpu"), first)[2].spans, initial.expand(1, 1, 3))
    with torch.no_grad():
        stable.span_predictors[0].bias.fill_(4.0)
    spans = stable(x, stable.initial_state(1, "cpu"), first)[2].spans
    torch.testing.assert_close(spans, (6 * torch.sigmoid(torch.tensor(4.0 / 2))).expand(1, 1, 3))
