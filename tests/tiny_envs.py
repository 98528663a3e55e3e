"""Tiny gymnasium envs, one per observation space kind, registered for the tests as ``tests.tiny_envs:Tiny-<kind>-v0``.

Each episode shows a cue (0-2) at its first step only and lasts 2 to 4 steps; the last action earns 1 (and
success) when it names the cue. A time limit of 3 steps truncates the 4-step episodes, so every kind has
terminations, truncations and resets inside a short window.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

KINDS = ("box", "image", "discrete", "multidiscrete", "dict", "tuple")
NO_CUE = 3
TIME_LIMIT = 3


class TinyEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, kind: str = "box", render_mode: str | None = None):
        self.kind, self.render_mode = kind, render_mode
        self.observation_space = {
            "box": spaces.Box(-1.0, 1.0, (3,), np.float32),
            "image": spaces.Box(0, 255, (6, 6, 3), np.uint8),
            "discrete": spaces.Discrete(4),
            "multidiscrete": spaces.MultiDiscrete([4, 3]),
            "dict": spaces.Dict({"cue": spaces.Discrete(4), "mission": spaces.Text(8), "pos": spaces.Box(0, 1, (2,))}),
            "tuple": spaces.Tuple((spaces.Discrete(4), spaces.MultiBinary(4))),
        }[kind]
        # Discrete actions counted from 1 and MultiDiscrete ones check that the adapter passes the env's own values
        self.action_space = spaces.MultiDiscrete([3, 2]) if kind == "multidiscrete" else spaces.Discrete(3, start=1)
        self.cue, self.t, self.length = 0, 0, 2

    def _obs(self) -> Any:
        cue = self.cue if self.t == 0 else NO_CUE
        if self.kind == "box":
            return np.array([cue / 3, self.t / 4, 0.0], dtype=np.float32)
        if self.kind == "image":
            image = np.zeros((6, 6, 3), dtype=np.uint8)
            if cue != NO_CUE:
                image[..., cue] = 255
            return image
        if self.kind == "discrete":
            return cue
        if self.kind == "multidiscrete":
            return np.array([cue, min(self.t, 2)])
        if self.kind == "dict":
            return {"cue": cue, "mission": "findit", "pos": np.array([self.t / 4, 0.5], dtype=np.float32)}
        return (cue, np.eye(4, dtype=np.int8)[self.t])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(3)), 0
        self.length = int(self.np_random.integers(2, 5))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        named = int(action[0]) if self.kind == "multidiscrete" else int(action) - 1
        assert self.action_space.contains(action), action
        terminated = self.t >= self.length
        success = terminated and named == self.cue
        return self._obs(), float(success), terminated, False, {"success": success} if terminated else {}

    def render(self) -> np.ndarray:
        frame = np.zeros((8, 8, 3), dtype=np.uint8)
        frame[:, :, self.cue] = 40 * (self.t + 1)
        return frame

    def state_dict(self) -> dict[str, int]:
        return {"cue": self.cue, "t": self.t, "length": self.length}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cue, self.t, self.length = state["cue"], state["t"], state["length"]


class TinyStatelessEnv(TinyEnv):
    """The same env without state_dict: a checkpoint cannot hold it."""

    state_dict = None  # type: ignore[assignment]


for _kind in KINDS:
    gymnasium.register(f"Tiny-{_kind}-v0", entry_point=TinyEnv, kwargs={"kind": _kind}, max_episode_steps=TIME_LIMIT)
gymnasium.register("TinyStateless-v0", entry_point=TinyStatelessEnv, max_episode_steps=TIME_LIMIT)
