"""Proximal policy optimisation (PPO) over memory: several epochs of clipped updates on each window.

Minibatches split the env rows, never time: each row keeps its whole window and is recomputed at
every epoch from its own stored start state, so the memory sees the same past as while acting and
truncated BPTT runs over the full window. The behaviour policy is the one that acted (its logits
are stored by collection); advantages come once per window from the acting values and are
normalised per minibatch. An epoch whose mean approximate KL to the behaviour policy passes
``target_kl`` (when set) is the last.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from agents.learner import Learner, action_log_probs, entropy_of, kl_acting_learner, masked_mean
from agents.rollout import Rollout
from memory_models import MemoryRecord


class PPO(Learner):
    def __init__(self, policy: nn.Module, optimizer: torch.optim.Optimizer, train: dict[str, Any], ppo: dict[str, Any]):
        """``ppo``: the config's ``[ppo]`` table (epochs, minibatches, clip, target_kl)."""
        super().__init__(policy, optimizer, train)
        self.epochs, self.minibatches = ppo["epochs"], ppo["minibatches"]
        self.clip, self.target_kl = ppo["clip"], ppo["target_kl"]

    def update(self, rollout: Rollout) -> tuple[dict[str, Tensor], MemoryRecord]:
        """``epochs`` passes of clipped updates over minibatches of rows; returns mean scalars and the first
        minibatch's record (the policy as it acted) for logging."""
        advantages, returns = self.advantages(rollout)  # N x T each
        _, behaviour = action_log_probs(rollout.logits, rollout.actions, self.splits)  # N x T
        sums: dict[str, Tensor] = {}
        first_record, kl_acting, epochs_done = None, None, 0
        for _ in range(self.epochs):
            epoch_kl = []
            for rows in torch.randperm(rollout.obs.shape[0], device=rollout.obs.device).tensor_split(self.minibatches):
                logits, values, record = self.recompute(
                    rollout.obs[rows], rollout.start_state.rows(rows), rollout.first[rows]
                )
                log_probs, taken = action_log_probs(logits, rollout.actions[rows], self.splits)  # n x T x A, n x T
                valid = None if rollout.valid is None else rollout.valid[rows]  # n x T
                log_ratio = taken - behaviour[rows]  # n x T
                ratio = log_ratio.exp()
                adv = normalised(advantages[rows], valid)  # n x T
                surrogate = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.clip, 1 + self.clip))  # n x T
                policy_loss = masked_mean(surrogate, valid)
                value_loss = 0.5 * masked_mean((returns[rows] - values).pow(2), valid)
                entropy = entropy_of(log_probs, valid)
                aux_loss = record.aux_loss.float()
                loss = policy_loss + self.value_cost * value_loss - self.entropy_cost * entropy + aux_loss
                if first_record is None:  # nothing has stepped yet: the learner's policy is the acting one
                    first_record, kl_acting = record, kl_acting_learner(rollout.logits[rows], logits, self.splits)
                grad_norm = self.step(loss)
                # the k3 estimator of KL(behaviour || current)
                approx_kl = masked_mean((ratio - 1) - log_ratio, valid).detach()
                epoch_kl.append(approx_kl)
                clipped = masked_mean(((ratio - 1).abs() > self.clip).float(), valid)
                scalars = {
                    "loss/policy": policy_loss,
                    "loss/value": value_loss,
                    "loss/aux": aux_loss,
                    "loss/total": loss,
                    "policy/entropy": entropy,
                    "policy/grad_norm": grad_norm,
                    "ppo/approx_kl": approx_kl,
                    "ppo/clip_fraction": clipped,
                }
                for name, value in scalars.items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
            epochs_done += 1
            if self.target_kl > 0 and self._mean_across_ranks(torch.stack(epoch_kl).mean()) > self.target_kl:
                break
        steps = epochs_done * self.minibatches
        metrics = {name: total / steps for name, total in sums.items()}
        metrics["policy/kl_acting_learner"] = kl_acting
        metrics["ppo/epochs"] = torch.tensor(float(epochs_done))
        return metrics, first_record

    @staticmethod
    def _mean_across_ranks(value: Tensor) -> float:
        """The mean over ranks, so every rank stops after the same epoch (DDP needs equal backward counts)."""
        if dist.is_available() and dist.is_initialized():
            value = value.clone()
            dist.all_reduce(value)
            value /= dist.get_world_size()
        return value.item()


def normalised(adv: Tensor, valid: Tensor | None) -> Tensor:
    """Advantages (n x T) normalised to mean 0 and std 1 over the valid steps."""
    if valid is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    count = valid.sum().clamp(min=2)
    mean = (adv * valid).sum() / count
    std = (((adv - mean) * valid).pow(2).sum() / (count - 1)).sqrt()  # unbiased, as Tensor.std
    return (adv - mean) / (std + 1e-8)
