"""Batched advantage actor-critic with truncated BPTT through the memory model.

One update, read top to bottom:
1. ``collect``: act ``unroll`` steps in the batched env without gradients, carrying the memory
   state from step to step; keep only the memory state at the window's start.
2. ``A2C.update``: recompute the whole window with gradients from that start state, with the
   episode-start flags, then GAE advantages, the actor-critic loss and one optimiser step.
3. The memory state reached while acting is carried (detached) into the next window.

Terminated and truncated differ. At a true end (terminated) the return stops: no bootstrap. At a
window end the return bootstraps from the value of the next observation, computed by one extra
no-grad step. At a time limit (truncated) it bootstraps too: the value of the episode's final
observation needs one more forward step with that episode's memory, i.e. a second model call on
every acting step. Instead we bootstrap from the value of the last observation the agent acted on
(same episode, same memory, already computed): a one-step-stale estimate, only at time limits,
which keeps a time limit from looking like a true end at no acting cost.
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.acting import ActingStep, autocast, sample_actions
from agents.episode_stats import EpisodeStats
from memory_models import MemoryRecord, MemoryState, clamp_parameters


@dataclasses.dataclass
class Carry:
    """What acting hands from one window to the next: the current observation and memory."""

    obs: Tensor  # N x 3 x 3 x V int8
    first: Tensor  # N bool: obs is the first of an episode
    state: MemoryState


@dataclasses.dataclass
class Rollout:
    """One window of experience, batch-first like the memory model's input."""

    start_state: MemoryState
    obs: Tensor  # N x T x 3 x 3 x V
    first: Tensor  # N x T
    actions: Tensor  # N x T
    logits: Tensor  # N x T x A, as computed while acting
    rewards: Tensor  # N x T
    terminated: Tensor  # N x T
    truncated: Tensor  # N x T
    bootstrap_value: Tensor  # N: value of the observation after the window


@dataclasses.dataclass
class Timing:
    """Seconds spent per phase since the last read (host clock; on CUDA, launch time)."""

    acting: float = 0.0
    env: float = 0.0
    learning: float = 0.0


@torch.no_grad()
def collect(
    step: ActingStep, env, carry: Carry, unroll: int, stats: EpisodeStats, timing: Timing
) -> tuple[Rollout, Carry]:
    """Act ``unroll`` steps in the batched ``env`` from ``carry`` with ``step`` (``agents.acting``); returns the
    window and the carry after it."""
    n, device = carry.obs.shape[0], carry.obs.device
    obs_buf = carry.obs.new_empty((n, unroll, *carry.obs.shape[1:]))  # N x T x 3 x 3 x V
    first_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    actions = torch.empty(n, unroll, dtype=torch.long, device=device)
    rewards = torch.empty(n, unroll, device=device)
    terminated_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    truncated_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    logits_buf = torch.empty(n, unroll, int(env.single_action_space.n), device=device)  # N x T x A
    obs, first, state = carry.obs, carry.first, carry.state
    start = time.perf_counter()
    env_seconds = 0.0
    for t in range(unroll):
        logits, _, state = step(obs, state, first)
        action = sample_actions(logits)
        obs_buf[:, t], first_buf[:, t], actions[:, t], logits_buf[:, t] = obs, first, action, logits
        env_start = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        env_seconds += time.perf_counter() - env_start
        rewards[:, t], terminated_buf[:, t], truncated_buf[:, t] = reward, terminated, truncated
        first = terminated | truncated
        stats.add(first, info)
    state = state.apply(torch.clone)  # a graphed step overwrites its state in place: keep the window's end
    _, bootstrap_value, _ = step(obs, state, first)
    timing.env += env_seconds
    timing.acting += time.perf_counter() - start - env_seconds
    rollout = Rollout(
        start_state=carry.state,
        obs=obs_buf,
        first=first_buf,
        actions=actions,
        logits=logits_buf,
        rewards=rewards,
        terminated=terminated_buf,
        truncated=truncated_buf,
        bootstrap_value=bootstrap_value.float(),
    )
    return rollout, Carry(obs=obs, first=first, state=state)


def gae(
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    discount: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and value targets, all N x T (see the module docstring for the ends)."""
    next_values = torch.cat([values[:, 1:], bootstrap_value.unsqueeze(1)], dim=1)  # N x T
    next_values = torch.where(truncated, values, next_values)
    next_values = torch.where(terminated, torch.zeros_like(values), next_values)
    deltas = rewards + discount * next_values - values  # N x T
    continues = discount * gae_lambda * (~(terminated | truncated)).to(values.dtype)  # N x T: 0 where an episode ends
    advantages = torch.empty_like(values)
    running = torch.zeros_like(bootstrap_value)  # N
    for t in reversed(range(values.shape[1])):
        running = deltas[:, t] + continues[:, t] * running
        advantages[:, t] = running
    return advantages, advantages + values


class A2C:
    """The learner: recompute a window with gradients and take one optimiser step."""

    def __init__(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        discount: float,
        gae_lambda: float,
        entropy_cost: float,
        value_cost: float,
        grad_clip: float,
        bf16: bool = False,
    ):
        """``policy`` is the module gradients flow through (the DistributedDataParallel wrapper when distributed)."""
        self.policy, self.optimizer = policy, optimizer
        self.discount, self.gae_lambda = discount, gae_lambda
        self.entropy_cost, self.value_cost, self.grad_clip, self.bf16 = entropy_cost, value_cost, grad_clip, bf16

    def update(self, rollout: Rollout) -> tuple[dict[str, Tensor], MemoryRecord]:
        """One gradient step on ``rollout``; returns detached scalars and the window's record for logging."""
        device = rollout.obs.device
        with autocast(device, self.bf16):
            logits, values, _, record = self.policy(rollout.obs, rollout.start_state, rollout.first)
        logits, values = logits.float(), values.float()  # N x T x A, N x T
        advantages, returns = gae(
            rollout.rewards,
            values.detach(),
            rollout.bootstrap_value,
            rollout.terminated,
            rollout.truncated,
            self.discount,
            self.gae_lambda,
        )
        log_probs = F.log_softmax(logits, dim=-1)  # N x T x A
        action_log_probs = log_probs.gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)  # N x T
        entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
        policy_loss = -(advantages * action_log_probs).mean()
        value_loss = 0.5 * (returns - values).pow(2).mean()
        aux_loss = record.aux_loss.float()
        loss = policy_loss + self.value_cost * value_loss - self.entropy_cost * entropy + aux_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.optimizer.step()
        clamp_parameters(self.policy)  # Adaptive-Span's span ratios back into [0, 1], as the authors do
        return {
            "loss/policy": policy_loss.detach(),
            "loss/value": value_loss.detach(),
            "loss/aux": aux_loss.detach(),
            "loss/total": loss.detach(),
            "policy/entropy": entropy.detach(),
            "policy/grad_norm": grad_norm.detach(),
        }, record
