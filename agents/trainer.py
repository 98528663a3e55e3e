"""Everything one training run holds (env, policy, optimiser, memory carry) and how it is saved and restored.

The runner (`runners/train_agent.py`) drives ``Trainer.update`` in a loop and does the logging; a
test can drive the same object directly. Under torchrun every rank builds its own ``Trainer`` with
its own env batch and seed; DistributedDataParallel averages the gradients, so parameters stay equal.
"""

from __future__ import annotations

import random
import shutil
import time
from typing import Any

import numpy as np
import torch
import torch._inductor.config
import torch.distributed as dist
from gymnasium import Space
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from agents.a2c import A2C
from agents.acting import ActingStep, GraphedActing, compiled_acting, eager_acting
from agents.config_checks import OPTIMIZERS, check_agent_config
from agents.curriculum import Curriculum, check_curriculum_config
from agents.encoders import SpaceEncoder
from agents.envs import make_env, uses_word_grid
from agents.episode_stats import EpisodeStats
from agents.learner import Learner
from agents.policy import Policy
from agents.ppo import PPO
from agents.rollout import Carry, Timing, collect
from agents.spaces import action_splits, num_logits
from memory_models import MemoryRecord
from training.checkpoint import restore_rng_states, rng_states
from training.distributed import World

RANK_SEED_STRIDE = 1000  # rank r acts with seed + 1000 r; evaluation seeds start far above (EVAL_SEED_OFFSET)
EVAL_SEED_OFFSET = 1_000_000_000


def model_options(model_name: str, model_config: dict[str, Any]) -> dict[str, Any]:
    """The ``[model]`` table's common options plus the chosen model's own sub-table (``[model.<name>]``)."""
    common = {key: value for key, value in model_config.items() if not isinstance(value, dict)}
    return {**common, **model_config.get(model_name, {})}


def policy_for_env(
    env_name: str, observation_space: Space, action_space: Space, model_name: str, config: dict[str, Any]
) -> Policy:
    """The policy for an env's spaces: the word-grid encoder for the project's tasks, else one built from the
    observation space (``agents/encoders.py``, the ``[agent]`` table's ``embed_dim``, ``hidden``,
    ``normalize_obs`` and ``image``); Discrete or MultiDiscrete actions. ``agent.actor_init_scale`` scales the actor
    head's initial weights and bias; ``agent.action_bias`` (when not empty) then sets the initial bias of each action
    logit, so that, say, costly speech starts rare."""
    splits = action_splits(action_space)
    agent, model_config = config["agent"], model_options(model_name, config["model"])
    if uses_word_grid(env_name) and splits is None:
        policy = Policy(observation_space.shape[-1], int(action_space.n), agent["embed_dim"], model_name, model_config)
    else:

        def encoder(d_model: int) -> SpaceEncoder:
            hidden, normalize = agent.get("hidden", 64), agent.get("normalize_obs", False)  # task presets lack them
            image = agent.get("image", "pixels")
            return SpaceEncoder(observation_space, d_model, agent["embed_dim"], hidden, normalize, image)

        logits = num_logits(action_space)
        policy = Policy(0, logits, agent["embed_dim"], model_name, model_config, encoder=encoder, action_splits=splits)
    with torch.no_grad():  # a small scale starts every seed near the uniform policy, whatever the observation
        policy.actor.weight.mul_(agent["actor_init_scale"])
        policy.actor.bias.mul_(agent["actor_init_scale"])
    bias = agent["action_bias"]
    if bias:
        if len(bias) != policy.actor.out_features:
            raise ValueError(
                f"agent.action_bias needs one value per action logit ({policy.actor.out_features}), got {len(bias)}"
            )
        with torch.no_grad():
            policy.actor.bias.copy_(torch.tensor(bias, dtype=policy.actor.bias.dtype))
    return policy


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One rank's training state: its env batch, the shared policy and optimiser, its memory carry."""

    def __init__(self, env_name: str, model_name: str, config: dict[str, Any], world: World, seed: int):
        train = config["train"]
        check_agent_config(config, model_options(model_name, config["model"]))
        self.env_name, self.model_name, self.config, self.world, self.seed = env_name, model_name, config, world, seed
        self.num_envs, self.unroll, self.bf16 = train["num_envs"], train["unroll"], train["bf16"]
        device = world.device
        if device.type == "cpu" and train["cpu_threads"] > 0:
            torch.set_num_threads(train["cpu_threads"])
        seed_everything(seed)  # the same initial parameters on every rank
        self.env = make_env(env_name, self.num_envs, device, config)
        self.policy = policy_for_env(
            env_name, self.env.single_observation_space, self.env.single_action_space, model_name, config
        ).to(device)
        learner_module = self.policy
        if world.distributed:
            device_ids = [device] if device.type == "cuda" else None
            learner_module = DistributedDataParallel(self.policy, device_ids=device_ids)
        self.optimizer = OPTIMIZERS[train["optimizer"]](
            self.policy.parameters(), lr=train["lr"], eps=train["optimizer_eps"]
        )
        self.learner: Learner = (
            PPO(learner_module, self.optimizer, train, config["ppo"])
            if train["algorithm"] == "ppo"
            else A2C(learner_module, self.optimizer, train)
        )
        check_curriculum_config(config["curriculum"], self.env.curriculum_params)
        self.curriculum = Curriculum(self.env, config["curriculum"], device)  # stage 0 before the first reset
        rank_seed = seed + RANK_SEED_STRIDE * world.rank
        seed_everything(rank_seed)  # each rank samples its own actions
        obs, _ = self.env.reset(seed=rank_seed)
        first = torch.ones(self.num_envs, dtype=torch.bool, device=device)
        self.carry = Carry(obs=obs, first=first, state=self.policy.initial_state(self.num_envs, device))
        self.stats = EpisodeStats(self.num_envs, device)
        self.timing = Timing()
        self.updates = 0
        self.resume_note: str | None = None  # why a resume was not exact, when it was not
        self.acting_step = self._acting_step(train["compile_acting"], train["cuda_graphs"])

    def _acting_step(self, compile_acting: bool, cuda_graphs: bool) -> ActingStep:
        """Eager, compiled and/or replayed as a CUDA graph (``agents/acting.py``): the latter two only for a
        memory model whose state keeps its shapes, compiled on CPU only with a C++ compiler to build the
        kernels; ``acting_mode`` says which, and why not when the config asked for more."""
        static, on_cuda = self.policy.memory.static_state, self.world.device.type == "cuda"
        compiler = torch._inductor.config.cpp.cxx[-1]  # what torch.compile builds CPU kernels with
        can_compile = on_cuda or shutil.which(compiler) is not None
        compiled = compile_acting and static and can_compile
        self.graphed = cuda_graphs and static and on_cuda
        step = (compiled_acting if compiled else eager_acting)(self.policy, self.bf16)
        if self.graphed:
            step = GraphedActing(step, self.carry.obs, self.carry.state, self.carry.first)
        self.acting_mode = " + ".join(["compiled"] * compiled + ["CUDA graph"] * self.graphed) or "eager"
        if (compile_acting or (cuda_graphs and on_cuda)) and not static:
            self.acting_mode += f" ({self.model_name}'s state changes shape from call to call)"
        elif compile_acting and not can_compile:
            self.acting_mode += f" (torch.compile on CPU needs a C++ compiler: no {compiler} found; set $CXX to one)"
        return step

    @property
    def steps_per_update(self) -> int:
        """Agent steps per update over all ranks."""
        return self.num_envs * self.unroll * self.world.world_size

    @property
    def global_step(self) -> int:
        return self.updates * self.steps_per_update

    def decayed(self, key: str) -> float:
        """``train.<key>``, or with ``train.<key>_decay`` its linear decay to zero over ``train.steps``."""
        train = self.config["train"]
        if not train[f"{key}_decay"]:
            return train[key]
        return train[key] * max(0.0, 1.0 - self.global_step / train["steps"])

    def update(self) -> tuple[dict[str, Tensor], MemoryRecord]:
        """Act one window, learn from it; returns the learner's scalars and the window's memory record."""
        self.policy.train()
        observers = [self.stats, self.curriculum] if self.curriculum.active else [self.stats]
        rollout, self.carry = collect(
            self.policy, self.acting_step, self.env, self.carry, self.unroll, observers, self.timing
        )
        start = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.decayed("lr")
        self.learner.entropy_cost = self.decayed("entropy_cost")
        metrics, record = self.learner.update(rollout)
        self.policy.update_statistics(rollout.obs)  # after the update: the window learned with the stats it acted on
        self.timing.learning += time.perf_counter() - start
        self.updates += 1
        if self.curriculum.active:
            self.curriculum.after_update()
        return metrics, record

    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: env, memory carry, RNG states and the episode statistics not yet logged."""
        carry = {"obs": self.carry.obs, "first": self.carry.first, "state": self.carry.state}  # weights_only-safe
        return {
            "env": self.env.state_dict(),
            "carry": carry,
            "rng": rng_states(),
            "stats": self.stats.state_dict(),
            "curriculum": self.curriculum.state_dict(),
        }

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resume needs; collective under torchrun (every rank must call it), complete on rank 0."""
        ranks = [self.rank_state()]
        if self.world.distributed:
            ranks = [None] * self.world.world_size
            dist.all_gather_object(ranks, self.rank_state())
        return {
            "env_name": self.env_name,
            "model_name": self.model_name,
            "config": self.config,
            "seed": self.seed,
            "world_size": self.world.world_size,
            "updates": self.updates,
            "global_step": self.global_step,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ranks": ranks,
        }

    def load_checkpoint_payload(self, payload: dict[str, Any]) -> None:
        if payload["world_size"] != self.world.world_size:
            raise ValueError(
                f"the checkpoint was written by {payload['world_size']} rank(s); resume it with as many, "
                f"not {self.world.world_size}"
            )
        self.policy.load_state_dict(payload["policy"])
        self.optimizer.load_state_dict(payload["optimizer"])
        rank = payload["ranks"][self.world.rank]
        fresh_obs = self.env.load_state_dict(rank["env"])
        self.curriculum.load_state_dict(rank["curriculum"])
        carry = rank["carry"]
        device = self.world.device
        self.carry = Carry(**{name: value.to(device) for name, value in carry.items()})
        if fresh_obs is not None:  # the env could not save its state and restarted: the memory restarts with it
            first = torch.ones(self.num_envs, dtype=torch.bool, device=device)
            self.carry = Carry(obs=fresh_obs, first=first, state=self.policy.initial_state(self.num_envs, device))
            self.resume_note = (
                f"{self.env_name} cannot save its state (exact resume needs sync vectorisation and envs with "
                "state_dict/load_state_dict): the resumed run starts fresh episodes"
            )
        restore_rng_states(rank["rng"])
        self.stats.load_state_dict(rank["stats"])
        self.updates = payload["updates"]
