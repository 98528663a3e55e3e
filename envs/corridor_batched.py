"""The batched torch twin of Corridor (`envs.corridor`), for N envs at once.

State per env: the agent's column `x` (1..n; it never leaves row 2) and the layout (`length`, `cue`,
`north_door`). The 3x3 window depends only on min(x - 1, 2) (how far the cue and the west wall are),
min(n - x, 2) (how far the junction is), the cue colour and the door order: 36 windows, tabulated
once from the reference env's own observations, then looked up with one `index_select`.
"""

import numpy as np
import torch

from envs.batched import BatchedWordGridEnv
from envs.corridor import CORRIDOR_ROW, CorridorEnv

MOVE_DX = (0, 1, 0, -1)  # per action: north, east, south, west


class BatchedCorridorEnv(BatchedWordGridEnv):
    """N Corridor envs in torch tensors; rules in `envs.corridor`."""

    reference_class = CorridorEnv
    state_names = ("x",)

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        min_length: int = 3,
        max_length: int = 200,
        max_steps: int = 1000,
    ):
        super().__init__(
            num_envs, device, render_mode, min_length=min_length, max_length=max_length, max_steps=max_steps
        )
        self.x = torch.ones(num_envs, dtype=torch.int64, device=self.device)
        self._dx = torch.tensor(MOVE_DX, device=self.device)
        self._vertical = torch.tensor([True, False, True, False], device=self.device)
        self._windows = self._tabulate_windows()  # 36 x 9V

    def _tabulate_windows(self) -> torch.Tensor:
        """Window k = 12 min(x-1, 2) + 4 min(n-x, 2) + 2 cue + north_door, from the reference env."""
        reference, windows = self.reference, []
        blank = np.zeros(reference.observation_space.shape, dtype=np.int8)
        for west in range(3):
            for east in range(3):
                for cue in range(2):
                    for north in range(2):
                        if west + east < 2:  # n = 1 + west + east >= 3: these never occur
                            windows.append(blank)
                            continue
                        x = 1 + west
                        reference.layout = {"length": x + east, "cue": cue, "north_door": north}
                        reference._gen_grid(reference.width, reference.height)
                        reference.agent_pos = (x, CORRIDOR_ROW)
                        windows.append(reference.gen_obs())
        return self.window_table(windows)

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        low, high = self.reference.min_length, self.reference.max_length
        draw = torch.randint(
            0, 4 * (high - low + 1), (self.num_envs,), generator=self.generator, device=self.device
        )  # one draw holds the door order, the cue and the length
        return {"length": (draw >> 2) + low, "cue": (draw >> 1) & 1, "north_door": draw & 1}

    def _begin_episodes(self, new: torch.Tensor) -> None:
        self.x.masked_fill_(new, 1)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        length = self.layouts["length"]
        winning_action = (self.layouts["north_door"] ^ self.layouts["cue"]) * 2  # 0 north, 2 south
        terminated = (self.x == length) & self._vertical.index_select(0, actions)  # a door at the junction
        success = terminated & (actions == winning_action)
        self.x = torch.minimum((self.x + self._dx.index_select(0, actions)).clamp_(min=1), length)
        return success.float(), terminated, success

    def _observe(self) -> torch.Tensor:
        west = (self.x - 1).clamp_(max=2)
        east = (self.layouts["length"] - self.x).clamp_(max=2)
        index = torch.add(self.layouts["north_door"], self.layouts["cue"], alpha=2)  # N
        index = torch.add(index.add_(west, alpha=12), east, alpha=4)
        return self.encode_windows(self._windows, index)

    def reference_view(self, i: int) -> CorridorEnv:
        self.reference.reset(options={"layout": self.layout(i)})
        self.reference.agent_pos = (int(self.x[i]), CORRIDOR_ROW)
        self.reference.step_count = int(self.step_count[i])
        return self.reference
