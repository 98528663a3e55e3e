"""Evaluation on held-out seeds: one episode in each of N fresh envs, with the same acting step as training.

Both the sampled policy (what training optimises) and the greedy one (the most likely action at every
step, what one reports for a chain of doors) are evaluated, on the same episode layouts.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.acting import act, greedy_actions, sample_actions
from agents.envs import is_task, make_batched_env, make_env
from agents.episode_stats import TASK_COUNTERS
from agents.policy import Policy
from agents.rollout import resets_next_step

CHECK_EVERY = 32  # steps between the host checks of whether every episode has finished


def evaluate(
    policy: Policy,
    env_name: str,
    env_config: dict[str, Any],
    episodes: int,
    seed: int,
    device: torch.device,
    gym_config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Sampled and greedy success, return and length (``success``, ``success_greedy``, ...) over the same
    ``episodes`` held-out layouts (env seed ``seed``); ``gym_config``: the ``[gym]`` table, for a gymnasium env.
    Without a success measure (``agents/gym_env.py``) there is no ``success``; a task that counts its
    instructions (``TASK_COUNTERS``) also gets their means per episode, so a failure can be told apart."""
    sampled = play(policy, env_name, env_config, episodes, seed, device, greedy=False, gym_config=gym_config)
    greedy = play(policy, env_name, env_config, episodes, seed, device, greedy=True, gym_config=gym_config)
    return {**sampled, **{f"{name}_greedy": value for name, value in greedy.items() if name != "episodes"}}


@torch.no_grad()
def play(
    policy: Policy,
    env_name: str,
    env_config: dict[str, Any],
    episodes: int,
    seed: int,
    device: torch.device,
    greedy: bool,
    gym_config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Success rate, mean return and length (and the task's counters) of ``episodes`` episodes (env seed ``seed``,
    policy in eval mode).

    Sampled actions come from a generator of their own, so evaluating in the middle of training leaves
    the training run's random streams untouched.
    """
    if is_task(env_name):
        env = make_batched_env(env_name, episodes, device, **env_config)
    else:  # one process per episode would cost more than the evaluation: async evaluates in sync
        vectorization = "sync" if gym_config["vectorization"] == "async" else gym_config["vectorization"]
        gym = {**gym_config, "vectorization": vectorization}
        env = make_env(env_name, episodes, device, {"env": env_config, "gym": gym})
    next_step = resets_next_step(env)
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator(device).manual_seed(seed)
    first = torch.ones(episodes, dtype=torch.bool, device=device)
    state = policy.initial_state(episodes, device)
    finished = torch.zeros(episodes, dtype=torch.bool, device=device)
    returns = torch.zeros(episodes, device=device)
    lengths = torch.zeros(episodes, device=device)
    successes = torch.zeros(episodes, device=device)
    counters: dict[str, torch.Tensor] = {}  # a task counter's value at each episode's end
    was_training = policy.training
    policy.eval()
    step = 0
    while True:
        logits, _, state, _ = act(policy, obs, state, first)
        splits = policy.action_splits
        actions = greedy_actions(logits, splits) if greedy else sample_actions(logits, generator, splits)  # N (x K)
        obs, _, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        first = done | info["reset_step"] if next_step else done
        new = done & ~finished  # N: the first episode of this env ended now
        returns = torch.where(new, info["episode_return"], returns)
        lengths = torch.where(new, info["episode_length"].to(lengths.dtype), lengths)
        successes = torch.where(new, info["success"].to(successes.dtype), successes)
        for name in TASK_COUNTERS:
            if name in info:
                ended = counters.get(name, torch.zeros(episodes, device=device))
                counters[name] = torch.where(new, info[name].to(ended.dtype), ended)
        finished |= done
        step += 1
        if step % CHECK_EVERY == 0 and bool(finished.all()):
            break
    policy.train(was_training)
    results = {
        "success": successes.mean().item(),
        "return": returns.mean().item(),
        "length": lengths.mean().item(),
        "episodes": float(episodes),
        **{name: values.mean().item() for name, values in counters.items()},
    }
    if not getattr(env, "reports_success", True):
        del results["success"]
    env.close()
    return results
