"""`WordGridEnv`: the reference base of the gridworlds, a minigrid `MiniGridEnv` with word observations.

What every task shares:

- Actions `Discrete(4)`: 0 north, 1 east, 2 south, 3 west (`MOVES`). There is no turning; moving into
  anything the agent cannot overlap (a wall, a door, a ball) leaves it in place, unless the task's
  `_move_into` hook says otherwise (doors end or teleport). Tasks may append actions (`n_actions`).
- Observation `MultiBinary((3, 3, V))` int8: the 3x3 window centred on the agent, north up, row 0 the
  north row, column 0 the west column. Channel k is the word `vocab[k]` (see `envs.vocab`). A cell's
  words come from its minigrid world object: `(obj.type, obj.color)`, or `obj.words` when the object
  class defines that tuple (e.g. a character drawn as a minigrid ball). Cells beyond the grid read
  as a wall (`wall grey`). The centre cell adds `agent` and the task's `agent_cell_words()`.
- Time limit: `step_count` reaching `max_steps` truncates the episode, unless the same step
  terminated it (then only terminated is set).
- Render modes "rgb_array" (minigrid's tile renderer: the whole grid, the agent as a triangle pointing
  along its last move, its 3x3 window highlighted) and "ansi" (one character per cell).

Episode layouts (how the batched twins are tested in exact lockstep):
  Everything random about an episode is drawn once, at reset, into its *layout*: a dict of small
  numpy arrays described by the task's `layout_space` (a `gymnasium.spaces.Dict`). Per-step
  randomness (a schedule of events, distractors) must be pre-sampled into the layout too, so that
  the episode is a pure function of its layout and the actions. `reset()` draws the layout from
  `self.np_random` (deterministic under `reset(seed=...)`); `reset(options={"layout": layout})`
  plays the given one instead (checked against `layout_space`). A batched twin draws layouts with
  its torch generator and exposes env i's through `twin.layout(i)`, so a reference env reset with
  it must then agree step by step.

A task subclass defines:
  `task_words` (class attribute, words appended to the base vocabulary), `layout_space`,
  `sample_layout(rng)`, `_gen_grid(width, height)` (build `self.grid` and place `self.agent_pos`
  from `self.layout`; may change `self.width`/`self.height`), `_move_into(x, y)` (the outcome of
  moving onto cell (x, y): reward and terminated) and optionally `agent_cell_words()`.
"""

from collections.abc import Iterable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv

from envs.checks import check_action, check_int
from envs.vocab import build_vocab

MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (dx, dy) of actions north, east, south, west; y grows south
MOVE_TO_MINIGRID_DIR = (3, 0, 1, 2)  # minigrid draws direction 0 east, 1 south, 2 west, 3 north
WINDOW_OFFSETS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # the 3x3 window, north row first
OUTSIDE = Wall()  # what a cell beyond the grid reads as
ANSI_CHARS = {"wall": "#", "door": "D", "ball": "o", "key": "k", "box": "b", "floor": "."}


def object_words(obj: WorldObj | None) -> tuple[str, ...]:
    """The words that describe a world object: `obj.words` when defined, else its type and colour."""
    if obj is None:
        return ()
    return getattr(obj, "words", None) or (obj.type, obj.color)


class WordGridEnv(MiniGridEnv):
    """A minigrid env with cardinal moves and 3x3 word observations; see the module docstring."""

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 10}
    task_words: tuple[str, ...] = ()
    n_actions = len(MOVES)
    layout_space: spaces.Dict

    def __init__(self, width: int, height: int, max_steps: int, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        super().__init__(
            mission_space=MissionSpace(mission_func=lambda: type(self).__name__),
            width=width,
            height=height,
            max_steps=check_int("max_steps", max_steps, 1),
            see_through_walls=True,
            agent_view_size=3,
            render_mode=render_mode,
        )
        self.vocab = build_vocab(self.task_words)
        self.word_index = {word: k for k, word in enumerate(self.vocab)}
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = spaces.MultiBinary((3, 3, len(self.vocab)))
        self.layout: dict[str, np.ndarray] = {}
        self._word_ids_cache: dict[tuple[str, ...], list[int]] = {}

    # ----- what a task defines -------------------------------------------------------------------

    def sample_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw everything random about one episode; an element of `layout_space`."""
        raise NotImplementedError

    def _move_into(self, x: int, y: int) -> tuple[float, bool]:
        """Move the agent onto cell (x, y) if it can overlap what is there; (reward, terminated)."""
        obj = self.grid.get(x, y)
        if obj is None or obj.can_overlap():
            self.agent_pos = (x, y)
        return 0.0, False

    def agent_cell_words(self) -> Iterable[str]:
        """Task words on the agent's own cell (besides `agent`), e.g. Portal's `room_k`."""
        return ()

    # ----- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        layout = (options or {}).get("layout")
        self.layout = self.sample_layout(self.np_random) if layout is None else self.check_layout(layout)
        self.agent_dir = 0
        self.carrying = None
        self.step_count = 0
        self._gen_grid(self.width, self.height)
        return self.gen_obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        action = check_action(action, self.n_actions)
        self.step_count += 1
        reward, terminated = self._act(action)
        truncated = not terminated and self.step_count >= self.max_steps
        return self.gen_obs(), reward, terminated, truncated, {}

    def _act(self, action: int) -> tuple[float, bool]:
        """Carry out one action; tasks with extra actions extend this. (reward, terminated)"""
        dx, dy = MOVES[action]
        self.agent_dir = MOVE_TO_MINIGRID_DIR[action]
        return self._move_into(self.agent_pos[0] + dx, self.agent_pos[1] + dy)

    def check_layout(self, layout: dict[str, Any]) -> dict[str, np.ndarray]:
        """`layout` with its arrays in the dtypes of `layout_space`, or a ValueError saying what is wrong."""
        if set(layout) != set(self.layout_space.spaces):
            raise ValueError(f"layout must have the keys {sorted(self.layout_space.spaces)}, got {sorted(layout)}")
        arrays = {}
        for key, space in self.layout_space.spaces.items():
            array = np.asarray(layout[key])
            if np.can_cast(array.dtype, space.dtype, casting="same_kind"):
                array = array.astype(space.dtype)
            if array not in space:
                raise ValueError(f"layout[{key!r}] = {array!r} is outside {space}")
            arrays[key] = array
        return arrays

    # ----- observation ------------------------------------------------------------------------------

    def word_ids(self, words: tuple[str, ...]) -> list[int]:
        """Vocabulary indices of `words` (cached per tuple of words)."""
        ids = self._word_ids_cache.get(words)
        if ids is None:
            ids = self._word_ids_cache[words] = [self.word_index[word] for word in words]
        return ids

    def cell(self, x: int, y: int) -> WorldObj | None:
        """The world object at (x, y); a wall beyond the grid."""
        grid = self.grid
        if 0 <= x < grid.width and 0 <= y < grid.height:
            return grid.grid[y * grid.width + x]
        return OUTSIDE

    def gen_obs(self) -> np.ndarray:
        """The (3, 3, V) int8 word window centred on the agent."""
        n_words = len(self.vocab)
        x, y = self.agent_pos
        hits = []  # flat indices (row * 3 + col) * V + word of the ones: one numpy write, not nine
        for k, (dx, dy) in enumerate(WINDOW_OFFSETS):
            hits += [k * n_words + i for i in self.word_ids(object_words(self.cell(x + dx, y + dy)))]
        hits += [4 * n_words + i for i in self.word_ids(("agent", *self.agent_cell_words()))]
        obs = np.zeros(self.observation_space.shape, dtype=np.int8)
        obs.reshape(-1)[hits] = 1
        return obs

    # ----- rendering ----------------------------------------------------------------------------------

    def render(self) -> np.ndarray | str | None:
        if self.render_mode == "ansi":
            return self.render_ansi()
        if self.render_mode == "rgb_array":
            return self.render_rgb()
        return None

    def render_rgb(self, tile_size: int | None = None) -> np.ndarray:
        """The whole grid as an (H*tile, W*tile, 3) uint8 image, the agent's 3x3 window highlighted."""
        highlight = np.zeros((self.grid.width, self.grid.height), dtype=bool)  # indexed [x, y]
        x, y = self.agent_pos
        highlight[max(x - 1, 0) : x + 2, max(y - 1, 0) : y + 2] = True
        return self.grid.render(tile_size or self.tile_size, self.agent_pos, self.agent_dir, highlight_mask=highlight)

    def render_ansi(self) -> str:
        """One character per cell: `A` agent, `#` wall, `D` door, `o` ball, `.` floor, space empty."""
        rows = []
        for y in range(self.grid.height):
            chars = [self._ansi_char(self.grid.get(x, y)) for x in range(self.grid.width)]
            if y == self.agent_pos[1]:
                chars[self.agent_pos[0]] = "A"
            rows.append("".join(chars))
        return "\n".join(rows)

    @staticmethod
    def _ansi_char(obj: WorldObj | None) -> str:
        return " " if obj is None else ANSI_CHARS.get(obj.type, "?")  # "?": a type without a character


def filled_grid(width: int, height: int) -> Grid:
    """A grid whose every cell is a wall (one shared, immutable Wall); carve the free cells out of it."""
    grid = Grid(width, height)
    grid.grid = [OUTSIDE] * (width * height)
    return grid
