"""Expire-Span: the mask, its loss, physical removal of expired memories for good (rows independent of their
batch), the cache bound, random shortening in both forms and the stable spans in both forms."""

import dataclasses
import math

import pytest
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
            predictor.bias.fill_(math.log(span / (model.max_span - span)) / model.bias_scale)


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


def test_a_fixed_cache_gives_the_outputs_and_losses_of_a_compacted_one_also_after_the_weights_change():
    config = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "max_span": 6, "ramp": 2, "pos_len": 4}
    compacted, fixed = ExpireSpan(**config).eval(), ExpireSpan(**config, compact=False).eval()
    with torch.no_grad():  # spread the spans so that memories expire at different times
        for predictor in compacted.span_predictors:
            predictor.weight.copy_(torch.linspace(-1, 1, D_MODEL))
    fixed.load_state_dict(compacted.state_dict())
    first = torch.rand(3, 30) < 0.1
    x = torch.randn(3, 30, D_MODEL)
    compacted_state, fixed_state = compacted.initial_state(3, "cpu"), fixed.initial_state(3, "cpu")
    begin, shortest = 0, fixed.cache_len
    for call, steps in enumerate([1, 4, 2, 9, 1, 6, 7]):
        if call == 4:  # longer spans from here: memories expired before stay expired in both caches
            lengthen(compacted)
            lengthen(fixed)
        window = slice(begin, begin + steps)
        out, compacted_state, record = compacted(x[:, window], compacted_state, first[:, window])
        out_fixed, fixed_state, record_fixed = fixed(x[:, window], fixed_state, first[:, window])
        torch.testing.assert_close(out_fixed, out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(record_fixed.aux_loss, record.aux_loss)
        torch.testing.assert_close(record_fixed.memory_size, record.memory_size)
        assert [m.shape[1] for m in fixed_state.memory] == [fixed.max_span + fixed.ramp - 1] * 2
        shortest = min(shortest, *(m.shape[1] for m in compacted_state.memory))
        begin += steps
    assert shortest < fixed.max_span + fixed.ramp - 1  # the compacted cache did remove memories


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


@pytest.mark.parametrize("form", ["hide", "cap"])
def test_random_shortening_only_in_training(form):
    model = make(init_bias=30.0, shorten=True, shorten_form=form)
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


@pytest.mark.parametrize(("form", "seen"), [("hide", [1, 2]), ("cap", [1, 2, 3, 4])])
def test_shortening_hides_keys_beyond_l_or_caps_each_span_at_l_with_its_ramp(form, seen):
    model = make(init_bias=30.0, shorten=True, shorten_form=form).train()  # every span is L = 6
    x, first = torch.randn(1, 9, D_MODEL, requires_grad=True), one_episode(1, 9)
    state = dataclasses.replace(model.initial_state(1, "cpu"), shorten_to=torch.tensor([2.5]))
    out, next_state, record = model(x, state, first)
    (grad,) = torch.autograd.grad(readout(out[0, 8]), x)
    # hide: the keys at most l = 2.5 back; cap: min(e, l) + R = 4.5, the keys 3 and 4 back inside the ramp
    assert [8 - step for step in range(8) if grad[0, step].abs().sum() > 0] == seen[::-1]
    assert record.memory_size[0] == sum(min(t, len(seen)) for t in range(9)) / 9
    assert next_state.memory[0].shape[1] == 7  # the cache keeps what the uncapped spans keep: L + R - 1
    if form == "cap":  # the span loss on the capped span, while a query sees it in the ramp: 3 and 4 steps back
        pairs = sum(max(0, min(t, 4) - 2) for t in range(9))
        torch.testing.assert_close(record.aux_loss, torch.tensor(model.loss_coef * pairs * 2.5 / 2 / 9))


def spread(model: ExpireSpan) -> ExpireSpan:
    """Spans that differ from memory to memory, so that memories expire at different times."""
    with torch.no_grad():
        for predictor in model.span_predictors:
            predictor.weight.copy_(torch.linspace(-1, 1, D_MODEL))
    return model


def lengthen(model: ExpireSpan) -> None:
    """A weight change that makes every span longer: an expired memory would come back if it were kept."""
    with torch.no_grad():
        for predictor in model.span_predictors:
            predictor.bias.add_(3.0)
            predictor.weight.mul_(-1)


@pytest.mark.parametrize("compact", [True, False])
def test_rows_batched_with_others_equal_each_row_alone_after_the_weights_change(compact):
    config = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "max_span": 6, "ramp": 2, "pos_len": 4}
    torch.manual_seed(0)
    batched = spread(ExpireSpan(**config, init_bias=-1.0, compact=compact).eval())
    alone = [ExpireSpan(**config, compact=compact).eval() for _ in range(3)]
    for model in alone:
        model.load_state_dict(batched.state_dict())
    x, first = torch.randn(3, 28, D_MODEL), torch.rand(3, 28) < 0.05
    first[:, 0] = True
    state = batched.initial_state(3, "cpu")
    states = [model.initial_state(1, "cpu") for model in alone]
    for begin in range(0, 28, 4):
        if begin == 16:
            for model in (batched, *alone):
                lengthen(model)
        window = slice(begin, begin + 4)
        out, state, _ = batched(x[:, window], state, first[:, window])
        for row, model in enumerate(alone):
            out_alone, states[row], _ = model(x[row : row + 1, window], states[row], first[row : row + 1, window])
            torch.testing.assert_close(out[row : row + 1], out_alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_span_loss_over_a_window_is_the_mean_of_its_one_step_losses(n_layers):
    """alpha e_i / T over every (query, memory) pair inside the ramp: a window of T queries gives the mean of the
    losses its queries give one step at a time, in value, and in gradient for one layer (above it, a window's
    spans also depend on the layer below within the window, which one-step calls cache without a gradient)."""
    model = spread(make(n_layers=n_layers, init_bias=0.0, loss_coef=1.0))
    x, first = torch.randn(2, 10, D_MODEL), torch.rand(2, 10) < 0.1
    first[:, 0] = True
    _, state, _ = model(x[:, :6], model.initial_state(2, "cpu"), first[:, :6])
    state = state.detach()
    _, _, record = model(x[:, 6:], state, first[:, 6:])
    window_grads = torch.autograd.grad(record.aux_loss, list(model.span_predictors.parameters()))
    losses, step_state = [], state
    for step in range(6, 10):
        _, step_state, step_record = model(x[:, step : step + 1], step_state, first[:, step : step + 1])
        losses.append(step_record.aux_loss)
    mean = torch.stack(losses).mean()
    assert record.aux_loss > 0
    torch.testing.assert_close(record.aux_loss, mean)
    if n_layers == 1:
        step_grads = torch.autograd.grad(mean, list(model.span_predictors.parameters()))
        for window_grad, step_grad in zip(window_grads, step_grads, strict=True):
            torch.testing.assert_close(window_grad, step_grad)


def test_fixed_span_window_loss_counts_every_query_in_the_ramp():
    model = make(loss_coef=1.0)
    fixed_span(model, 2.5)  # memories 3 and 4 steps back are in the ramp
    _, _, record = model(torch.randn(1, 6, D_MODEL), model.initial_state(1, "cpu"), one_episode(1, 6))
    pairs = sum(max(0, min(t, 4) - 2) for t in range(6))  # queries 3, 4, 5 see 1, 2, 2 memories in the ramp
    torch.testing.assert_close(record.aux_loss, torch.tensor(pairs * 2.5 / 2 / 6))


@pytest.mark.parametrize("form", ["input", "logit"])
def test_stable_spans_with_a_non_zero_weight(form):
    plain, stable = make(init_bias=-1.0), make(init_bias=-1.0, stable_spans=True, stable_form=form)
    x, first = torch.randn(1, 3, D_MODEL), one_episode(1, 3)
    initial = 6 * torch.sigmoid(torch.tensor(-1.0))
    for model in (plain, stable):  # the same initial spans in every form
        torch.testing.assert_close(model(x, model.initial_state(1, "cpu"), first)[2].spans, initial.expand(1, 1, 3))
    weight, bias = torch.linspace(-2, 2, D_MODEL), 1.5
    with torch.no_grad():
        stable.span_predictors[0].weight.copy_(weight)
        stable.span_predictors[0].bias.fill_(bias)
    spans = stable(x, stable.initial_state(1, "cpu"), first)[2].spans[0, 0]  # T
    projected = stable.layers[0].attention_input(x[0]) @ weight  # T: w . h for the pre-LN layer's input
    logits = projected / 2 + bias if form == "input" else (projected + bias) / 2  # R = 2
    torch.testing.assert_close(spans, 6 * torch.sigmoid(logits))


@pytest.mark.parametrize(("form", "bias_rate"), [("input", 1.0), ("logit", 0.5)])
def test_with_adam_the_input_form_moves_the_span_logit_as_fast_as_the_plain_form(form, bias_rate):
    """Adam steps each parameter by about the learning rate: dividing the bias by R (eq. 8 as printed) moves
    the logit of e / L R times slower; dividing only the input (the authors' pre_div) leaves its rate alone."""
    model = make(init_bias=0.0, stable_spans=True, stable_form=form)
    optimizer = torch.optim.Adam(model.span_predictors.parameters(), lr=0.1)
    x, first = torch.randn(1, 3, D_MODEL), one_episode(1, 3)
    model(x, model.initial_state(1, "cpu"), first)[2].spans.sum()  # the spans before
    spans = model.spans(0, x)
    spans.sum().backward()
    optimizer.step()
    after = model.spans(0, x) / 6  # B x M: e / L
    weight_part = model.layers[0].attention_input(x) @ model.span_predictors[0].weight[0] / 2  # w moved too
    torch.testing.assert_close(torch.logit(after) - weight_part, torch.full_like(after, -0.1 * bias_rate))
