"""Any gymnasium env behind the interface the batched twins have, so the trainer never asks which it drives.

The interface (what ``agents.rollout.collect``, ``agents.evaluation`` and the trainer use):

- ``num_envs``, ``single_observation_space`` (text parts dropped), ``single_action_space``, ``metadata``
  (its ``autoreset_mode``);
- ``reset(seed=...) -> (obs, info)`` and ``step(actions) -> (obs, reward, terminated, truncated, info)``,
  every value a torch tensor on the training device (obs as ``agents.spaces.to_tensor`` packs it),
  ``actions`` a tensor of action indices (N, or N x K for MultiDiscrete, counted from 0);
- ``info["episode_return"]``, ``info["episode_length"]`` and ``info["success"]`` (N each, valid where
  the episode ended), and with NEXT_STEP autoreset ``info["reset_step"]`` (N bool: this step only
  reset the env, its action was ignored);
- ``curriculum_params`` and ``set_task(**params)`` for curricula, ``state_dict()`` and
  ``load_state_dict(state)`` for checkpoints, ``close()``.

The twins satisfy it as they are. ``GymVectorEnv`` wraps ``gymnasium.make_vec``: the env's own vector
entry point or sync or async vectorisation (in either autoreset mode), under gymnasium's
``RecordEpisodeStatistics`` (the twins, reached through their gymnasium ids, report their own).
Success is the env's own info key when it reports one, else a return threshold when the config sets
one, else not reported.

Checkpoints: the env's state is saved exactly for sync vectorisation when every env defines
``state_dict()`` and ``load_state_dict()`` (with its RNG and time limit, saved here), and for a vector
entry point that defines them; otherwise a resumed run starts fresh episodes, and says so.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import TimeLimit
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from torch import Tensor

from agents.spaces import action_splits, to_tensor, without_text

VECTORIZATIONS = ("auto", "sync", "async", "vector_entry_point")
STATISTICS = ("episode_returns", "episode_lengths", "prev_dones")  # RecordEpisodeStatistics' running state
AUTORESETS = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


def check_gym_config(gym: dict[str, Any]) -> None:
    """ValueErrors naming the first bad value of the ``[gym]`` table."""
    if gym["vectorization"] not in VECTORIZATIONS:
        raise ValueError(f"gym.vectorization must be one of {', '.join(VECTORIZATIONS)}, got {gym['vectorization']!r}")
    if gym["autoreset"] not in AUTORESETS:
        raise ValueError(f"gym.autoreset must be one of {', '.join(AUTORESETS)}, got {gym['autoreset']!r}")


def reports_own_statistics(env: gymnasium.vector.VectorEnv) -> bool:
    """The project's twins report episode_return and episode_length themselves (in torch, on their device)."""
    from envs.batched import BatchedWordGridEnv

    return isinstance(env.unwrapped, BatchedWordGridEnv)


def _numpy(value: Any) -> np.ndarray:
    return value.cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


class GymVectorEnv:
    """``num_envs`` copies of gymnasium env ``env_id`` through ``gymnasium.make_vec``, as tensors on ``device``."""

    curriculum_params: tuple[str, ...] = ()

    def __init__(self, env_id: str, num_envs: int, device: torch.device | str, gym: dict[str, Any], **env_kwargs: Any):
        check_gym_config(gym)
        self.env_id, self.num_envs, self.device = env_id, num_envs, torch.device(device)
        mode = gym["vectorization"]
        if mode == "auto":
            mode = "vector_entry_point" if gymnasium.spec(env_id).vector_entry_point is not None else "sync"
        self.mode = mode
        vector_kwargs = {"autoreset_mode": AUTORESETS[gym["autoreset"]]} if mode != "vector_entry_point" else {}
        try:
            env = gymnasium.make_vec(env_id, num_envs, mode, vector_kwargs=vector_kwargs, **env_kwargs)
        except TypeError as error:
            if not env_kwargs:
                raise
            raise ValueError(f"{env_id} does not take the [env] arguments {', '.join(env_kwargs)}: {error}") from None
        self.base = env
        self.env = env if reports_own_statistics(env) else RecordEpisodeStatistics(env)
        # gymnasium's default, for a vector entry point that does not say
        self.next_step = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) == AutoresetMode.NEXT_STEP
        mode_used = AutoresetMode.NEXT_STEP if self.next_step else AutoresetMode.SAME_STEP
        self.metadata = {**env.metadata, "autoreset_mode": mode_used}
        self.single_observation_space = without_text(env.single_observation_space)
        self.single_action_space = env.single_action_space
        action_splits(self.single_action_space)  # an unsupported action space stops here
        space = self.single_action_space
        self.action_start = np.asarray(space.start) if isinstance(space, spaces.Discrete | spaces.MultiDiscrete) else 0
        self.success_key = gym["success_key"]
        self.success_return = gym["success_return"] if gym["success_from_return"] else None
        self.seen_success_key = False
        self.prev_done = np.zeros(num_envs, dtype=bool)
        self.seed, self.steps = 0, 0

    @property
    def reports_success(self) -> bool:
        """Whether ``info["success"]`` means anything: the env reported its key, or a return threshold is set."""
        return self.seen_success_key or self.success_return is not None

    def set_task(self, **params: Any) -> None:
        raise ValueError(f"{self.env_id} cannot change {', '.join(sorted(params))} between episodes (changeable: none)")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Tensor, dict]:
        self.seed, self.steps = seed or 0, 0
        obs, _ = self.env.reset(seed=seed, options=options)
        self.prev_done[:] = False
        return to_tensor(obs, self.single_observation_space, self.device), {}

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        env_actions = actions.cpu().numpy() + self.action_start  # N (x K): the env's own action values
        obs, reward, terminated, truncated, info = self.env.step(env_actions)
        terminated, truncated = _numpy(terminated).astype(bool), _numpy(truncated).astype(bool)
        done = terminated | truncated
        self.steps += 1
        returns, lengths = self._episode_statistics(info, done)
        result = {
            "episode_return": torch.as_tensor(returns, dtype=torch.float32, device=self.device),
            "episode_length": torch.as_tensor(lengths, dtype=torch.int64, device=self.device),
            "success": torch.as_tensor(self._success(info, done, returns), device=self.device),
        }
        if self.next_step:
            result["reset_step"] = torch.as_tensor(self.prev_done.copy(), device=self.device)
            self.prev_done = done
        return (
            to_tensor(obs, self.single_observation_space, self.device),
            torch.as_tensor(_numpy(reward), dtype=torch.float32, device=self.device),
            torch.as_tensor(terminated, device=self.device),
            torch.as_tensor(truncated, device=self.device),
            result,
        )

    def _episode_statistics(self, info: dict[str, Any], done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-env return and length of the episodes that ended (zeros elsewhere)."""
        if "episode_return" in info:
            return _numpy(info["episode_return"]), _numpy(info["episode_length"])
        if "episode" in info:
            return _numpy(info["episode"]["r"]), _numpy(info["episode"]["l"])
        return np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=np.int64)

    def _success(self, info: dict[str, Any], done: np.ndarray, returns: np.ndarray) -> np.ndarray:
        """Per-env success of the episodes that ended: the env's key (SAME_STEP: in ``final_info``), else the
        return threshold, else False."""
        for source in (info.get("final_info", {}), info):
            if self.success_key in source:
                self.seen_success_key = True
                mask = _numpy(source.get(f"_{self.success_key}", np.ones(self.num_envs, dtype=bool)))
                return _numpy(source[self.success_key]).astype(bool) & mask.astype(bool) & done
        if self.success_return is not None:
            return (returns >= self.success_return) & done
        return np.zeros(self.num_envs, dtype=bool)

    # ----- checkpoints ---------------------------------------------------------------------------------

    def _sub_envs(self) -> list[gymnasium.Env] | None:
        """The sync vector env's envs when each can save its state, else None."""
        envs = getattr(self.base, "envs", None) if self.mode == "sync" else None
        if envs is None or not all(callable(getattr(env.unwrapped, "state_dict", None)) for env in envs):
            return None
        return envs

    @property
    def exact_state(self) -> bool:
        """Whether ``state_dict`` captures the envs exactly (see the module docstring)."""
        if self.mode == "vector_entry_point":
            return callable(getattr(self.base, "state_dict", None))
        return self._sub_envs() is not None

    def state_dict(self) -> dict[str, Any]:
        """The envs' state where they can save it (``exact``), else what a fresh start needs."""
        state: dict[str, Any] = {"exact": self.exact_state, "reseed": (self.seed * 1_000_003 + self.steps) % 2**31}
        if not state["exact"]:
            return state
        state["prev_done"] = torch.as_tensor(self.prev_done.copy())
        state["steps"] = self.steps
        if isinstance(self.env, RecordEpisodeStatistics):
            state["stats"] = {name: torch.as_tensor(getattr(self.env, name).copy()) for name in STATISTICS}
        if self.mode == "vector_entry_point":
            state["vector"] = self.base.state_dict()
            return state
        state["autoreset_envs"] = torch.as_tensor(self.base._autoreset_envs.copy())
        state["envs"] = [
            {
                "env": env.unwrapped.state_dict(),
                "np_random": env.unwrapped.np_random.bit_generator.state,
                "elapsed_steps": _time_limit(env)._elapsed_steps if _time_limit(env) is not None else None,
            }
            for env in self._sub_envs()
        ]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> Tensor | None:
        """Restore a ``state_dict()``. When it could not be saved exactly, start fresh episodes (seeded from the
        checkpoint) and return their first observations: the caller's memory must restart with them."""
        if not state["exact"] or not self.exact_state:
            obs, _ = self.reset(seed=state["reseed"])
            return obs
        self.prev_done = state["prev_done"].numpy().copy()
        self.steps = state["steps"]
        for name, value in state.get("stats", {}).items():
            setattr(self.env, name, value.numpy().copy())
        if self.mode == "vector_entry_point":
            self.base.load_state_dict(state["vector"])
            return None
        self.base._autoreset_envs = state["autoreset_envs"].numpy().copy()
        for env, saved in zip(self._sub_envs(), state["envs"], strict=True):
            env.unwrapped.load_state_dict(saved["env"])
            env.unwrapped.np_random.bit_generator.state = saved["np_random"]
            if saved["elapsed_steps"] is not None:
                _time_limit(env)._elapsed_steps = saved["elapsed_steps"]
        return None

    def close(self) -> None:
        self.env.close()


def _time_limit(env: gymnasium.Env) -> TimeLimit | None:
    """The TimeLimit wrapper in ``env``'s chain of wrappers, if any."""
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, TimeLimit):
            return env
        env = env.env
    return None
