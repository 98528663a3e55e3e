"""What every learner shares before its loss: acting one window in the batched env, and GAE advantages.

``collect`` acts ``unroll`` steps without gradients, carrying the memory state from step to step, and
keeps only the memory state at the window's start; a learner then recomputes the whole window from
that state with gradients (true truncated BPTT) and the memory reached while acting is carried on.
At the window's start the memory model draws whatever randomness the window shares
(``MemoryModel.begin_window``: Expire-Span's random shortening), so the recompute sees the very
policy that acted.

Terminated and truncated differ. At a true end (terminated) the return stops: no bootstrap. At a
window end the return bootstraps from the value of the next observation, computed by one extra
no-grad step. At a time limit (truncated) it bootstraps too: the value of the episode's final
observation needs one more forward step with that episode's memory, i.e. a second model call on
every acting step. Instead we bootstrap from the value of the last observation the agent acted on
(same episode, same memory, already computed): a one-step-stale estimate, only at time limits,
which keeps a time limit from looking like a true end at no acting cost.

Autoreset. With SAME_STEP (the twins) the step that ends an episode returns the next episode's first
observation. With NEXT_STEP (gymnasium's sync and async vector envs by default) it returns the last
observation, and the step after it is a reset step: the env ignores the action, returns reward 0
and the new episode's first observation. An env says so with ``info["reset_step"]``; collection
keeps those steps (the memory sees the window as it ran) but marks them invalid in ``Rollout.valid``,
and GAE and every loss leave them out. They never link the episodes: the episode's end stops GAE
before the reset step, and the reset step's own advantage is zero. The observation after a reset step
is the first of its episode (``first``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Protocol

import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from agents.acting import ActingStep, sample_actions
from agents.policy import Policy
from memory_models import MemoryState


class EpisodeObserver(Protocol):
    """Anything that watches episodes end while acting (episode statistics, a curriculum)."""

    def add(self, done: Tensor, info: dict[str, Tensor]) -> None: ...


def resets_next_step(env) -> bool:
    """True when ``env`` autoresets in the step after an episode ends (gymnasium's NEXT_STEP mode)."""
    return env.metadata.get("autoreset_mode") == AutoresetMode.NEXT_STEP


@dataclasses.dataclass
class Carry:
    """What acting hands from one window to the next: the current observation and memory."""

    obs: Tensor  # N x observation (a word grid: 3 x 3 x V int8)
    first: Tensor  # N bool: obs is the first of an episode
    state: MemoryState


@dataclasses.dataclass
class Rollout:
    """One window of experience, batch-first like the memory model's input."""

    start_state: MemoryState
    obs: Tensor  # N x T x observation
    first: Tensor  # N x T
    actions: Tensor  # N x T (MultiDiscrete: N x T x K)
    logits: Tensor  # N x T x A, as computed while acting (MultiDiscrete: the components' logits joined)
    values: Tensor  # N x T, as computed while acting
    rewards: Tensor  # N x T
    terminated: Tensor  # N x T
    truncated: Tensor  # N x T
    bootstrap_value: Tensor  # N: value of the observation after the window
    valid: Tensor | None = None  # N x T: False on NEXT_STEP reset steps; None where every step is a transition


@dataclasses.dataclass
class Timing:
    """Seconds spent per phase since the last read (host clock; on CUDA, launch time)."""

    acting: float = 0.0
    env: float = 0.0
    learning: float = 0.0


@torch.no_grad()
def collect(
    policy: Policy,
    step: ActingStep,
    env,
    carry: Carry,
    unroll: int,
    observers: Sequence[EpisodeObserver],
    timing: Timing,
) -> tuple[Rollout, Carry]:
    """Act ``unroll`` steps in the batched ``env`` from ``carry`` with ``step`` (``policy``'s acting step,
    ``agents.acting``); returns the window and the carry after it."""
    n, device = carry.obs.shape[0], carry.obs.device
    splits = policy.action_splits
    obs_buf = carry.obs.new_empty((n, unroll, *carry.obs.shape[1:]))  # N x T x observation
    first_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    action_shape = (n, unroll) if splits is None else (n, unroll, len(splits))  # N x T (x K)
    actions = torch.empty(action_shape, dtype=torch.long, device=device)
    next_step = resets_next_step(env)
    valid = torch.empty(n, unroll, dtype=torch.bool, device=device) if next_step else None
    values = torch.empty(n, unroll, device=device)
    rewards = torch.empty(n, unroll, device=device)
    terminated_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    truncated_buf = torch.empty(n, unroll, dtype=torch.bool, device=device)
    logits_buf = torch.empty(n, unroll, policy.actor.out_features, device=device)  # N x T x A
    start_state = policy.memory.begin_window(carry.state)
    obs, first, state = carry.obs, carry.first, start_state
    start = time.perf_counter()
    env_seconds = 0.0
    for t in range(unroll):
        logits, value, state = step(obs, state, first)
        action = sample_actions(logits, splits=splits)
        obs_buf[:, t], first_buf[:, t], actions[:, t] = obs, first, action
        logits_buf[:, t], values[:, t] = logits, value
        env_start = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        env_seconds += time.perf_counter() - env_start
        rewards[:, t], terminated_buf[:, t], truncated_buf[:, t] = reward, terminated, truncated
        done = terminated | truncated  # N
        first = done
        if next_step:
            valid[:, t] = ~info["reset_step"]
            first = done | info["reset_step"]  # N: a reset step returns the new episode's first observation
        for observer in observers:
            observer.add(done, info)
    state = state.apply(torch.clone)  # a graphed step overwrites its state in place: keep the window's end
    _, bootstrap_value, _ = step(obs, state, first)
    timing.env += env_seconds
    timing.acting += time.perf_counter() - start - env_seconds
    rollout = Rollout(
        start_state=start_state,
        obs=obs_buf,
        first=first_buf,
        actions=actions,
        logits=logits_buf,
        values=values,
        rewards=rewards,
        terminated=terminated_buf,
        truncated=truncated_buf,
        bootstrap_value=bootstrap_value.float(),
        valid=valid,
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
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and value targets, all N x T (see the module docstring for the ends);
    ``valid`` (N x T) zeroes the advantage of the steps that are no transition (NEXT_STEP reset steps)."""
    next_values = torch.cat([values[:, 1:], bootstrap_value.unsqueeze(1)], dim=1)  # N x T
    next_values = torch.where(truncated, values, next_values)
    next_values = torch.where(terminated, torch.zeros_like(values), next_values)
    deltas = rewards + discount * next_values - values  # N x T
    continues = discount * gae_lambda * (~(terminated | truncated)).to(values.dtype)  # N x T: 0 where an episode ends
    if valid is not None:
        deltas = deltas * valid  # N x T: a reset step adds nothing
        continues = continues * valid  # N x T: and passes nothing on
    advantages = torch.empty_like(values)
    running = torch.zeros_like(bootstrap_value)  # N
    for t in reversed(range(values.shape[1])):
        running = deltas[:, t] + continues[:, t] * running
        advantages[:, t] = running
    return advantages, advantages + values
