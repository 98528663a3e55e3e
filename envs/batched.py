"""`BatchedWordGridEnv`: the base of the natively batched torch twins of the gridworlds.

A twin is a `gymnasium.vector.VectorEnv` that holds all N envs of one task in torch tensors on one
device and steps them together, with no Python loop over envs and no host sync in `step` (CPU
checks of the actions aside), so it runs at full speed on CUDA. It must reproduce its reference env
(`reference_class`, a `envs.base.WordGridEnv`) exactly: same spaces, vocabulary, rules and
observations, tested by driving both in lockstep on the same episode layouts.

Autoreset is SAME_STEP (`metadata["autoreset_mode"]`): an env whose episode ends in `step` starts
its next episode within that step; the returned obs is the new episode's first obs, and
`info["final_obs"]` holds the last obs of the episode that ended. `info` also holds, per env,
"episode_return" (float32), "episode_length" (int64) and "success" (bool), meaningful where
`terminated | truncated`.

Episode layouts: `_sample_layouts()` draws a layout for every env with `self.generator`, as a dict
of tensors with a leading N dimension; at each step the envs that ended take the freshly drawn rows
(`torch.where`), the others keep theirs. So the cost of drawing a layout is paid for all N envs at
every step: keep layouts small (tens to hundreds of numbers per env, or pack them: Portal keeps its
door bits in one int64). `layout(i)` returns env i's current layout as numpy arrays in the form of the
reference's `layout_space`, which its `reset(options={"layout": ...})` accepts; by default the twin
stores one tensor per key of `layout_space`, and a twin that stores its layouts in another form
(Corridor keeps a start-state number) overrides `layout(i)` to convert.

A task subclass defines:
  `reference_class`; `state_names` (its own per-env state tensors, attributes of the instance, saved
  by `state_dict`); `_sample_layouts()`; `_begin_episodes(new)` (set the task state of the envs
  where the bool mask `new` is True to the start of the episode given by `self.layouts`);
  `_transition(actions)` (apply the actions, return reward float32, terminated bool and success
  bool, each (N,)); `_observe()` (N x 3 x 3 x V int8); and `reference_view(i)` (the reference env
  put into env i's current state, which `render()` draws).

Two ways to build observations without loops, both exact copies of the reference's words:
  - `window_table(windows)` + `table.index_select(0, index)`: when the window takes few distinct
    values (Corridor, Portal), tabulate every window once from the reference env itself and look
    up a per-env index;
  - `word_table(kinds)` + `window_codes(grid, x, y)` + `encode_cells(...)`: a code grid (shared H x W
    or per-env N x H x W, with a wall border so windows never leave it) whose codes index a table of
    cell words, gathered at the 9 window offsets.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.base import WINDOW_OFFSETS, WordGridEnv
from envs.checks import check_int


class BatchedWordGridEnv(VectorEnv):
    """N envs of one gridworld stepped together in torch; see the module docstring."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array", "ansi"]}
    reference_class: type[WordGridEnv]
    state_names: tuple[str, ...] = ()
    curriculum_params: tuple[str, ...] = ()

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        **task_kwargs: Any,
    ):
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.device = torch.device(device)
        self.render_mode = render_mode
        self.reference = self.reference_class(render_mode=render_mode, **task_kwargs)
        self.vocab = self.reference.vocab
        self.max_steps = self.reference.max_steps
        self.single_observation_space = self.reference.observation_space
        self.single_action_space = self.reference.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(self.device)
        self.generator.seed()
        self.step_count = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self.layouts: dict[str, torch.Tensor] = {}

    # ----- what a task defines -----------------------------------------------------------------------

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _begin_episodes(self, new: torch.Tensor) -> None:
        raise NotImplementedError

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        raise NotImplementedError

    def reference_view(self, i: int) -> WordGridEnv:
        """The reference env put into env i's current state (for rendering and inspection)."""
        raise NotImplementedError

    def _set_task(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----- curricula ------------------------------------------------------------------------------------

    def set_task(self, **params: Any) -> None:
        """Change task parameters for the episodes that begin after this call; running episodes keep theirs.

        Only the parameters in `curriculum_params` can change; anything else is a ValueError naming them.
        """
        unknown = sorted(set(params) - set(self.curriculum_params))
        if unknown:
            changeable = ", ".join(self.curriculum_params) or "none"
            raise ValueError(
                f"{type(self).__name__} cannot change {', '.join(unknown)} between episodes (changeable: {changeable})"
            )
        self._set_task(params)

    # ----- gymnasium API --------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new episode in every env; a seed makes the whole run (layouts included) repeatable."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.layouts = self._sample_layouts()
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._restart(everyone, self.layouts)
        return self._observe(), {}

    def step(self, actions: torch.Tensor | np.ndarray):
        if not self.layouts:
            raise RuntimeError("reset() must be called before step()")
        actions = self._check_actions(actions)
        reward, terminated, success = self._transition(actions)
        self.step_count += 1
        self.episode_return += reward
        done = terminated | (self.step_count >= self.max_steps)
        truncated = done ^ terminated  # the time limit, unless the episode terminated anyway
        info = {
            "final_obs": self._observe(),
            "episode_return": self.episode_return,
            "episode_length": self.step_count,
            "success": success,
        }
        self._restart(done, self._sample_layouts())  # replaces (does not modify) the tensors in info
        return self._observe(), reward, terminated, truncated, info

    def _restart(self, done: torch.Tensor, fresh: dict[str, torch.Tensor]) -> None:
        """Begin new episodes, with the fresh layouts, in the envs where `done` (N,) is True."""
        for key, value in fresh.items():
            mask = done.view(-1, *[1] * (value.dim() - 1))
            self.layouts[key] = torch.where(mask, value, self.layouts[key])
        self.step_count = self.step_count.masked_fill(done, 0)
        self.episode_return = self.episode_return.masked_fill(done, 0.0)
        self._begin_episodes(done)

    def _check_actions(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Actions as an int64 (N,) tensor on the device; a ValueError when outside the action space."""
        n_actions = int(self.single_action_space.n)
        actions = torch.as_tensor(actions, device=self.device)
        if actions.shape != (self.num_envs,) or actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise ValueError(
                f"actions must be {self.num_envs} integers in [0, {n_actions - 1}], "
                f"got {actions.dtype} of shape {tuple(actions.shape)}"
            )
        if self.device.type == "cpu":
            low, high = torch.aminmax(actions)
            if low.item() < 0 or high.item() >= n_actions:
                raise ValueError(f"actions must be integers in [0, {n_actions - 1}], got {actions.tolist()}")
        else:
            torch._assert_async(((actions >= 0) & (actions < n_actions)).all(), "action outside the action space")
        return actions.long()

    def layout(self, i: int) -> dict[str, np.ndarray]:
        """Env i's current episode layout, as the reference's `reset(options={"layout": ...})` takes it."""
        return {key: value[i].cpu().numpy() for key, value in self.layouts.items()}

    def render(self) -> np.ndarray | str | None:
        """Env 0 drawn by the reference renderer (`render_mode` "rgb_array" or "ansi"); None before
        `reset`. The agent is drawn facing east: the twin keeps no heading, which no rule uses."""
        if self.render_mode is None or not self.layouts:
            return None
        return self.reference_view(0).render()

    # ----- checkpointing -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The complete state: every per-env tensor, the layouts and the generator state."""
        tensors = {name: getattr(self, name) for name in ("step_count", "episode_return", *self.state_names)}
        return {
            "tensors": {name: value.clone() for name, value in tensors.items()},
            "layouts": {key: value.clone() for key, value in self.layouts.items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`, possibly saved on another device."""
        for name, value in state["tensors"].items():
            setattr(self, name, value.to(self.device, copy=True))
        self.layouts = {key: value.to(self.device, copy=True) for key, value in state["layouts"].items()}
        self.generator.set_state(state["generator"])

    # ----- observation helpers ----------------------------------------------------------------------------

    def window_table(self, windows: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack reference observations (3, 3, V) into a K x 9V int8 lookup table on the device
        (2-D, because `index_select` on dim 0 of a 2-D tensor is many times faster than on 4-D)."""
        return torch.as_tensor(np.stack(windows), dtype=torch.int8, device=self.device).flatten(1)

    def encode_windows(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Observation N x 3 x 3 x V: row `index` (N,) of a `window_table`."""
        return table.index_select(0, index).view(-1, 3, 3, len(self.vocab))

    def word_table(self, kinds: Sequence[Sequence[str]]) -> torch.Tensor:
        """K x V int8 table: row k is the multi-hot of the words of cell kind k."""
        table = torch.zeros(len(kinds), len(self.vocab), dtype=torch.int8)
        for k, words in enumerate(kinds):
            table[k, [self.reference.word_index[word] for word in words]] = 1
        return table.to(self.device)

    def window_codes(self, grid: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Codes N x 3 x 3 of the windows centred on (x, y) (N,) in a code grid H x W or N x H x W."""
        width = grid.shape[-1]
        offsets = torch.tensor([dy * width + dx for dx, dy in WINDOW_OFFSETS], device=self.device)
        flat = (y * width + x).unsqueeze(1) + offsets  # N x 9
        if grid.dim() == 2:
            return grid.reshape(-1)[flat].view(-1, 3, 3)
        return grid.reshape(grid.shape[0], -1).gather(1, flat).view(-1, 3, 3)

    def encode_cells(
        self, table: torch.Tensor, codes: torch.Tensor, agent_cell_words: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Observation N x 3 x 3 x V from cell codes N x 3 x 3: each cell's words, plus `agent` and the
        optional task words (N x V int8 multi-hot) on the centre cell."""
        obs = table.index_select(0, codes.reshape(-1)).view(*codes.shape, -1)  # N x 3 x 3 x V
        obs[:, 1, 1, self.reference.word_index["agent"]] = 1
        if agent_cell_words is not None:
            obs[:, 1, 1] |= agent_cell_words
        return obs
