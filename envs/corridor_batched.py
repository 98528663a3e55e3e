"""The batched torch twin of Corridor (`envs.corridor`), for N envs at once.

A Corridor episode is a walk on few states: the corridor length n, the colours (2 cue + north_door,
0..3) and the agent's column x (1..n; it never leaves row 2). The twin numbers every such state,
tabulates the rules once over all of them (next state, reward, terminated, success for each of the
four actions; the observation window of each state), and then steps all N envs with a handful of
table lookups: a step costs about 25 small torch ops, whatever N is. The tables grow as
max_length squared (80,388 states for the default U(3, 200)), so the twin accepts max_length up to
`MAX_LENGTH`.

Each env's state is `state` (N,); its layout is the start state of its episode, `layouts["start"]`,
which `layout(i)` decodes into the reference's `length`, `cue`, `north_door`. The observation depends
on min(x - 1, 2) (how far the cue and the west wall are), min(n - x, 2) (how far the junction is)
and the colours: 36 windows, drawn once from the reference env's own observations.
"""

import numpy as np
import torch

from envs.base import MOVES
from envs.batched import BatchedWordGridEnv
from envs.checks import check_int
from envs.corridor import CORRIDOR_ROW, CorridorEnv

MOVE_DX = np.array([dx for dx, _ in MOVES])  # per action
MAX_LENGTH = 1000


class BatchedCorridorEnv(BatchedWordGridEnv):
    """N Corridor envs in torch tensors; rules in `envs.corridor`."""

    reference_class = CorridorEnv
    state_names = ("state",)
    curriculum_params = ("min_length", "max_length")

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        min_length: int = 3,
        max_length: int = 200,
        max_steps: int = 1000,
    ):
        check_int("max_length", max_length, 3, MAX_LENGTH)
        super().__init__(
            num_envs, device, render_mode, min_length=min_length, max_length=max_length, max_steps=max_steps
        )
        self._number_states(min_length, max_length)
        self._lengths = (min_length, max_length)  # the range the tables cover
        self._draw_range = (0, len(self._starts))  # start states drawn from: lengths min_length..max_length
        self._tabulate_rules()
        self._windows = self._tabulate_windows()  # 36 x 9V
        self.state = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    def _number_states(self, low: int, high: int) -> None:
        """State s <-> (n, colours, x): the states of length n are a block of 4 n, colours-major."""
        lengths = np.arange(low, high + 1)
        sizes = 4 * lengths
        self._first_state = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # per length
        self.length_of = np.repeat(lengths, sizes)  # per state
        within = np.arange(sizes.sum()) - np.repeat(self._first_state, sizes)
        self.colours_of, self.x_of = within // self.length_of, within % self.length_of + 1
        starts = self._first_state[:, None] + np.arange(4)[None, :] * lengths[:, None]  # x = 1; n x colours
        self._starts = torch.as_tensor(starts.reshape(-1), device=self.device)

    def _tabulate_rules(self) -> None:
        """Next state, reward, terminated and success of every (state, action), as flat tables indexed
        4 state + action; the window of every state."""
        n, x, colours = self.length_of[:, None], self.x_of[:, None], self.colours_of[:, None]
        cue, north_door = colours >> 1, colours & 1
        actions = np.arange(4)[None, :]
        terminated = (x == n) & (actions % 2 == 0)  # north or south at the junction: a door
        success = terminated & (actions == 2 * (north_door ^ cue))  # north wins iff it has the cue colour
        x_next = np.clip(x + MOVE_DX[actions], 1, n)
        state = np.arange(len(self.x_of))[:, None]

        def table(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(values.reshape(-1), dtype=dtype, device=self.device)

        self._next = table(state + x_next - x, torch.int64)
        self._reward = table(success, torch.float32)
        self._terminated = table(terminated, torch.bool)
        self._success = table(success, torch.bool)
        window = 12 * np.minimum(x - 1, 2) + 4 * np.minimum(n - x, 2) + colours
        self._window_of = table(window, torch.int64)

    def _tabulate_windows(self) -> torch.Tensor:
        """Window 12 min(x-1, 2) + 4 min(n-x, 2) + 2 cue + north_door, from the reference env."""
        reference, windows = self.reference, []
        blank = np.zeros(reference.observation_space.shape, dtype=np.int8)
        for west in range(3):
            for east in range(3):
                for colours in range(4):
                    if west + east < 2:  # n = 1 + west + east >= 3: these never occur
                        windows.append(blank)
                        continue
                    x = 1 + west
                    reference.layout = {"length": x + east, "cue": colours >> 1, "north_door": colours & 1}
                    reference._gen_grid(reference.width, reference.height)
                    reference.agent_pos = (x, CORRIDOR_ROW)
                    windows.append(reference.gen_obs())
        return self.window_table(windows)

    def _set_task(self, params: dict[str, int]) -> None:
        """Draw lengths from a sub-range of the one the env was built with (its tables cover no more)."""
        low, high = self._lengths
        new_low, new_high = params.get("min_length", low), params.get("max_length", high)
        if not low <= new_low <= new_high <= high:
            raise ValueError(
                f"a Corridor built for lengths {low} to {high} can draw lengths within that range only, "
                f"got min_length {new_low} and max_length {new_high}"
            )
        self._draw_range = (4 * (new_low - low), 4 * (new_high - low + 1))  # starts are length-major, 4 per length

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        draw = torch.randint(
            *self._draw_range, (self.num_envs,), generator=self.generator, device=self.device
        )  # uniform over (length, colours) in the drawn range
        return {"start": self._starts.index_select(0, draw)}

    def _begin_episodes(self, new: torch.Tensor) -> None:
        self.state = torch.where(new, self.layouts["start"], self.state)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = torch.add(actions, self.state, alpha=4)  # N
        self.state = self._next.index_select(0, flat)
        reward, terminated = self._reward.index_select(0, flat), self._terminated.index_select(0, flat)
        return reward, terminated, self._success.index_select(0, flat)

    def _observe(self) -> torch.Tensor:
        return self.encode_windows(self._windows, self._window_of.index_select(0, self.state))

    def layout(self, i: int) -> dict[str, np.ndarray]:
        start = int(self.layouts["start"][i])
        colours = self.colours_of[start]
        return {
            "length": np.array(self.length_of[start], dtype=np.int64),
            "cue": np.array(colours >> 1, dtype=np.int64),
            "north_door": np.array(colours & 1, dtype=np.int64),
        }

    def reference_view(self, i: int) -> CorridorEnv:
        self.reference.reset(options={"layout": self.layout(i)})
        self.reference.agent_pos = (int(self.x_of[int(self.state[i])]), CORRIDOR_ROW)
        self.reference.step_count = int(self.step_count[i])
        return self.reference
