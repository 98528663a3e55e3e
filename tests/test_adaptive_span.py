"""Adaptive-Span: the per-head ramp mask, its loss, and a trimmed cache that changes nothing."""

import torch

from memory_models.adaptive_span import AdaptiveSpan, span_mask
from tests.conftest import readout

D_MODEL = 16
CONFIG = {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "max_span": 8, "ramp": 2}


def test_mask_is_one_within_the_span_then_ramps_to_zero():
    spans = torch.tensor([3.0, 0.5])  # H
    distance = torch.arange(7).view(1, 7, 1)  # 1 x T x M
    mask = span_mask(spans, distance, ramp=2)  # 1 x H x T x M
    torch.testing.assert_close(mask[0, 0, :, 0], torch.tensor([1, 1, 1, 1, 0.5, 0, 0]))
    torch.testing.assert_close(mask[0, 1, :, 0], torch.tensor([1, 0.75, 0.25, 0, 0, 0, 0]))


def test_memory_size_and_cache_follow_the_widest_head():
    torch.manual_seed(0)
    model = AdaptiveSpan(**CONFIG).eval()
    with torch.no_grad():
        model.span_ratios.copy_(torch.tensor([[0.25, 0.0], [0.1, 0.5]]))  # spans 2, 0 and 0.8, 4
    first = torch.zeros(1, 12, dtype=torch.bool)
    first[0, 0] = True
    _, state, record = model(torch.randn(1, 12, D_MODEL), model.initial_state(1, "cpu"), first)
    assert [m.shape[1] for m in state.memory] == [3, 5]  # ceil(max z + R) - 1
    # keys within reach of the widest head, summed over the 12 queries of a fresh episode, / 12
    expected = [sum(min(t, 3) for t in range(12)) / 12, sum(min(t, 5) for t in range(12)) / 12]
    torch.testing.assert_close(record.memory_size, torch.tensor(expected))
    torch.testing.assert_close(record.spans[:, 0, 0], torch.tensor([2.0, 4.0]))


def test_trimmed_cache_equals_untrimmed():
    class Untrimmed(AdaptiveSpan):
        def cache_lengths(self, spans):
            return [self.max_span] * self.n_layers

    torch.manual_seed(0)
    trimmed = AdaptiveSpan(**CONFIG).eval()
    with torch.no_grad():
        trimmed.span_ratios.copy_(torch.tensor([[0.3, 0.05], [0.1, 0.45]]))
    untrimmed = Untrimmed(**CONFIG).eval()
    untrimmed.load_state_dict(trimmed.state_dict())
    x, first = torch.randn(3, 20, D_MODEL), torch.rand(3, 20) < 0.1
    first[:, 0] = True
    trimmed_state, untrimmed_state = trimmed.initial_state(3, "cpu"), untrimmed.initial_state(3, "cpu")
    for begin in range(0, 20, 4):
        window = slice(begin, begin + 4)
        out, trimmed_state, _ = trimmed(x[:, window], trimmed_state, first[:, window])
        reference, untrimmed_state, _ = untrimmed(x[:, window], untrimmed_state, first[:, window])
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    assert [m.shape[1] for m in trimmed_state.memory] == [4, 5]
    assert [m.shape[1] for m in untrimmed_state.memory] == [8, 8]


def test_span_loss_pulls_every_span_down_and_the_task_can_push_it_up():
    torch.manual_seed(0)
    model = AdaptiveSpan(**CONFIG, loss_coef=0.5, init_span=0.5).eval()
    x, first = torch.randn(2, 12, D_MODEL), torch.zeros(2, 12, dtype=torch.bool)
    first[:, 0] = True
    out, _, record = model(x, model.initial_state(2, "cpu"), first)
    torch.testing.assert_close(record.aux_loss, torch.tensor(0.5 * 4.0 * 2))  # coef * z, mean of heads, 2 layers
    (loss_grad,) = torch.autograd.grad(record.aux_loss, model.span_ratios, retain_graph=True)
    torch.testing.assert_close(loss_grad, torch.full((2, 2), 0.5 * 8 / 2))  # coef * S / H
    (task_grad,) = torch.autograd.grad(readout(out), model.span_ratios)
    assert torch.all(task_grad != 0)  # keys inside the ramp give every span a task gradient
