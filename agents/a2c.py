"""Advantage actor-critic (A2C): one gradient step on each window, recomputed whole from its start state."""

from __future__ import annotations

from torch import Tensor

from agents.learner import Learner, action_log_probs, entropy_of, kl_acting_learner, masked_mean
from agents.rollout import Rollout
from memory_models import MemoryRecord


class A2C(Learner):
    def update(self, rollout: Rollout) -> tuple[dict[str, Tensor], MemoryRecord]:
        """One gradient step on ``rollout``; returns detached scalars and the window's record for logging."""
        advantages, returns = self.advantages(rollout)  # N x T each
        logits, values, record = self.recompute(rollout.obs, rollout.start_state, rollout.first)
        log_probs, taken = action_log_probs(logits, rollout.actions, self.splits)  # N x T x A, N x T
        valid = rollout.valid  # N x T, or None: every step is a transition to learn from
        entropy = entropy_of(log_probs, valid)
        policy_loss = -masked_mean(advantages * taken, valid)
        value_loss = 0.5 * masked_mean((returns - values).pow(2), valid)
        aux_loss = record.aux_loss.float()
        loss = policy_loss + self.value_cost * value_loss - self.entropy_cost * entropy + aux_loss
        kl = kl_acting_learner(rollout.logits, logits, self.splits)
        grad_norm = self.step(loss)
        return {
            "loss/policy": policy_loss.detach(),
            "loss/value": value_loss.detach(),
            "loss/aux": aux_loss.detach(),
            "loss/total": loss.detach(),
            "policy/entropy": entropy.detach(),
            "policy/grad_norm": grad_norm,
            "policy/kl_acting_learner": kl,
        }, record
