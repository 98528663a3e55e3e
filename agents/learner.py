"""What A2C and PPO share after collection: GAE on the acting values, the window recompute, the optimiser step.

Each algorithm's loss lives in its own file (``a2c.py``, ``ppo.py``) and reads top to bottom; this base
holds only what both do the same way.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.acting import autocast
from agents.rollout import Rollout, gae
from memory_models import MemoryRecord, MemoryState, clamp_parameters


def log_softmax(logits: Tensor, splits: tuple[int, ...] | None = None) -> Tensor:
    """Log-probabilities, per component when ``splits`` (MultiDiscrete) is given: ... x A either way.

    Summing over the last axis then gives the joint entropy and KL of the components, which are independent."""
    if splits is None:
        return F.log_softmax(logits.float(), dim=-1)
    return torch.cat([F.log_softmax(part.float(), dim=-1) for part in logits.split(splits, dim=-1)], dim=-1)


def action_log_probs(logits: Tensor, actions: Tensor, splits: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Log-probabilities of every action (N x T x A) and of the actions taken (N x T; with ``splits`` the actions
    are N x T x K and their log-probabilities are summed over the components)."""
    log_probs = log_softmax(logits, splits)  # N x T x A
    if splits is None:
        return log_probs, log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    offsets = torch.tensor([0, *splits[:-1]], device=actions.device).cumsum(0)  # K: each component's first logit
    return log_probs, log_probs.gather(-1, actions + offsets).sum(-1)


def masked_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """The mean of ``x`` (N x T) over the valid steps (all of them when ``valid`` is None)."""
    if valid is None:
        return x.mean()
    return (x * valid).sum() / valid.sum().clamp(min=1)


def entropy_of(log_probs: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean entropy of the policies given by ``log_probs`` (N x T x A), over the valid steps."""
    return masked_mean(-(log_probs.exp() * log_probs).sum(-1), valid)


def kl_acting_learner(acting_logits: Tensor, learner_logits: Tensor, splits: tuple[int, ...] | None = None) -> Tensor:
    """Mean KL(acting || learner) per step: zero when the learner recomputes the policy that acted."""
    acting = log_softmax(acting_logits, splits)  # N x T x A
    learner = log_softmax(learner_logits.detach(), splits)  # N x T x A
    return (acting.exp() * (acting - learner)).sum(-1).mean()


class Learner:
    """The shared half of a learner; ``update(rollout)`` is each algorithm's own."""

    def __init__(self, policy: nn.Module, optimizer: torch.optim.Optimizer, train: dict[str, Any]):
        """``policy`` is the module gradients flow through (the DistributedDataParallel wrapper when distributed);
        ``train`` the config's ``[train]`` table."""
        self.policy, self.optimizer = policy, optimizer
        self.splits = getattr(getattr(policy, "module", policy), "action_splits", None)  # MultiDiscrete: per component
        self.discount, self.gae_lambda = train["discount"], train["gae_lambda"]
        self.entropy_cost, self.value_cost = train["entropy_cost"], train["value_cost"]
        self.grad_clip, self.bf16 = train["grad_clip"], train["bf16"]

    def advantages(self, rollout: Rollout) -> tuple[Tensor, Tensor]:
        """GAE advantages and value targets (N x T) from the values computed while acting."""
        return gae(
            rollout.rewards,
            rollout.values.float(),
            rollout.bootstrap_value,
            rollout.terminated,
            rollout.truncated,
            self.discount,
            self.gae_lambda,
            rollout.valid,
        )

    def recompute(self, obs: Tensor, start_state: MemoryState, first: Tensor) -> tuple[Tensor, Tensor, MemoryRecord]:
        """The window again, with gradients, from its start state: logits N x T x A, values N x T, record."""
        with autocast(obs.device, self.bf16):
            logits, values, _, record = self.policy(obs, start_state, first)
        return logits.float(), values.float(), record

    def step(self, loss: Tensor) -> Tensor:
        """One optimiser step on ``loss`` with gradient-norm clipping; returns the norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.optimizer.step()
        clamp_parameters(self.policy)  # Adaptive-Span's span ratios back into [0, 1], as the authors do
        return grad_norm.detach()
