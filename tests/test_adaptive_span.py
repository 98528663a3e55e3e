"""Adaptive-Span: the per-head ramp mask, its loss, bounds kept by the training loops, and a trimmed cache
(with slack for spans that grow between calls) that changes nothing."""

import pytest
import torch

import memory_models
from agents.a2c import A2C
from agents.acting import eager_acting
from agents.envs import make_batched_env
from agents.episode_stats import EpisodeStats
from agents.policy import Policy
from agents.ppo import PPO
from agents.rollout import Carry, Timing, collect
from memory_models.adaptive_span import AdaptiveSpan, span_mask
from runners import train_lm
from tests.conftest import readout
from tests.test_lm_runner import arguments
from training.checkpoint import load_checkpoint

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
    model = AdaptiveSpan(**CONFIG, cache_slack=1).eval()
    with torch.no_grad():
        model.span_ratios.copy_(torch.tensor([[0.25, 0.0], [0.1, 0.5]]))  # spans 2, 0 and 0.8, 4
    first = torch.zeros(1, 12, dtype=torch.bool)
    first[0, 0] = True
    _, state, record = model(torch.randn(1, 12, D_MODEL), model.initial_state(1, "cpu"), first)
    assert [m.shape[1] for m in state.memory] == [3 + 1, 5 + 1]  # ceil(max z + R) - 1, plus the slack
    # keys within reach of the widest head, summed over the 12 queries of a fresh episode, / 12
    expected = [sum(min(t, 3) for t in range(12)) / 12, sum(min(t, 5) for t in range(12)) / 12]
    torch.testing.assert_close(record.memory_size, torch.tensor(expected))
    torch.testing.assert_close(record.spans[:, 0, 0], torch.tensor([2.0, 4.0]))


class Untrimmed(AdaptiveSpan):
    """Keeps and attends over the last S steps whatever the spans."""

    def reaches(self, spans):
        return [self.max_span] * self.n_layers


def test_trimmed_cache_equals_untrimmed():
    torch.manual_seed(0)
    trimmed = AdaptiveSpan(**CONFIG, cache_slack=0).eval()
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


def growing_spans_outputs(cache_slack: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Outputs of a trimmed and an untrimmed model, call by call, while the spans change between calls
    (by at most two steps, as an optimiser step does by far less)."""
    torch.manual_seed(0)
    trimmed = AdaptiveSpan(**CONFIG, cache_slack=cache_slack).eval()
    untrimmed = Untrimmed(**CONFIG).eval()
    untrimmed.load_state_dict(trimmed.state_dict())
    x, first = torch.randn(3, 27, D_MODEL), torch.rand(3, 27) < 0.05
    first[:, 0] = True
    base = torch.tensor([[0.0, 0.05], [0.1, 0.0]])  # spans 0, 0.4 and 0.8, 0
    growth = [0, 2, 4, 6, 8, 6, 3, 5, 7]  # steps added to every span at each call; 8 is S: every ratio at 1
    states, results = [trimmed.initial_state(3, "cpu"), untrimmed.initial_state(3, "cpu")], []
    for call, steps in enumerate(growth):
        with torch.no_grad():
            for model in (trimmed, untrimmed):
                model.span_ratios.copy_(base + steps / 8)
                model.clamp_parameters()
        window = slice(3 * call, 3 * call + 3)
        outs = []
        for index, model in enumerate((trimmed, untrimmed)):
            out, states[index], _ = model(x[:, window], states[index], first[:, window])
            outs.append(out)
        results.append((outs[0], outs[1]))
    return results


def test_spans_that_grow_between_calls_see_what_an_untrimmed_cache_shows():
    for out, reference in growing_spans_outputs(cache_slack=2):
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    # without slack, the first queries after a span grows miss the keys the cache no longer holds
    assert any(not torch.allclose(out, reference, atol=1e-3) for out, reference in growing_spans_outputs(0))


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_a_span_resting_at_a_bound_moves_back_at_the_first_step_that_points_inwards(bound):
    torch.manual_seed(0)
    model = AdaptiveSpan(**CONFIG, loss_coef=1.0, init_span=bound)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x, first = torch.randn(2, 6, D_MODEL), torch.zeros(2, 6, dtype=torch.bool)
    first[:, 0] = True
    outward = 1.0 if bound == 0.0 else -1.0  # the span loss pulls spans down, its negative pushes them up
    for _ in range(20):  # each step moves the ratios 4 past the bound (coef * S / H)
        optimizer.zero_grad()
        (outward * model(x, model.initial_state(2, "cpu"), first)[2].aux_loss).backward()
        optimizer.step()
        memory_models.clamp_parameters(model)
        assert torch.all(model.span_ratios == bound)
    out, _, record = model(x, model.initial_state(2, "cpu"), first)
    (task_grad,) = torch.autograd.grad(readout(out), model.span_ratios, retain_graph=True)
    # at zero the keys inside the ramp still give the task a gradient; at S no key lies beyond the span
    assert torch.all(task_grad != 0) if bound == 0.0 else torch.all(task_grad == 0)
    optimizer.zero_grad()
    (-0.01 * outward * record.aux_loss).backward()
    optimizer.step()
    memory_models.clamp_parameters(model)
    torch.testing.assert_close(model.span_ratios, torch.full((2, 2), bound + 0.01 * outward * 4))


def test_span_loss_is_the_same_over_any_window():
    torch.manual_seed(0)
    model = AdaptiveSpan(**CONFIG, loss_coef=0.5, init_span=0.5).eval()
    x, first = torch.randn(2, 12, D_MODEL), torch.rand(2, 12) < 0.2
    state, losses = model.initial_state(2, "cpu"), []
    for begin, steps in [(0, 1), (1, 5), (6, 6)]:
        _, state, record = model(x[:, begin : begin + steps], state, first[:, begin : begin + steps])
        losses.append(record.aux_loss)
    # a penalty on the parameters, not on what a window attends to: one per update, whatever T
    torch.testing.assert_close(torch.stack(losses), torch.full((3,), 0.5 * 4.0 * 2))


def test_the_agent_learner_keeps_the_ratios_in_bounds():
    env = make_batched_env("corridor", 4, "cpu", min_length=3, max_length=6, max_steps=12)
    torch.manual_seed(0)
    options = {"d_model": D_MODEL, "n_heads": 2, "max_span": 8, "ramp": 2, "loss_coef": 1.0}
    policy = Policy(env.single_observation_space.shape[-1], int(env.single_action_space.n), 8, "adaptive_span", options)
    obs, _ = env.reset(seed=0)
    carry = Carry(obs, torch.ones(4, dtype=torch.bool), policy.initial_state(4, "cpu"))
    rollout, _ = collect(policy, eager_acting(policy), env, carry, 8, [EpisodeStats(4, torch.device("cpu"))], Timing())
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)  # the span loss alone moves a ratio by -4
    train = {"discount": 0.99, "gae_lambda": 0.95, "entropy_cost": 0.01, "value_cost": 0.5, "grad_clip": 1e9}
    for learner in (A2C(policy, optimizer, {**train, "bf16": False}), PPO(policy, optimizer, {**train, "bf16": False},
                    {"epochs": 1, "minibatches": 2, "clip": 0.2, "target_kl": 0.0})):  # fmt: skip
        learner.update(rollout)
        ratios = policy.memory.span_ratios
        assert torch.all((ratios >= 0) & (ratios <= 1)) and torch.any(ratios == 0)


def test_the_sequence_runner_keeps_the_ratios_in_bounds(tmp_path):
    extra = ["--set", "models.adaptive_span.loss_coef=1.0", "--set", "training.lr=1.0", "--set", "training.warmup=1"]
    train_lm.main(arguments(tmp_path, "collision", "adaptive_span", *extra))  # Adam: each step moves a ratio by 1
    ratios = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]["memory.span_ratios"]
    assert torch.all((ratios >= 0) & (ratios <= 1)) and torch.any(ratios == 0)
