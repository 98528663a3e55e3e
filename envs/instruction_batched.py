"""The batched torch twin of Instruction (`envs.instruction`), for N envs at once.

State per env: the agent's cell (`x`, `y`; an episode starts on its layout's `start`), which
instructions were carried out (`right`, N x K bool) or `failed`, the count of `wrong` speech
actions, and the layout. The walk bonus's potential is a function of these (the walk to each niche
is a table from the reference). Everything else is a function
of the layout and the step count t, computed afresh each step: who is away (t_k <= t < t_k + delay),
where the cats are (border cell (phase + t) mod 16), the instruction and chatter words on the
agent's cell. The episode's `delay`, `wrong_penalty` and `chatter_prob` are part of its layout, one
value per env: `set_task` changes the values drawn for the episodes that begin after it, and the
running episodes keep theirs.

Observations: a table gives, per agent cell, what its 9 window cells read as: an index into a
per-env row of codes (floor, wall, then one code per niche slot: 2 + c where character c stands
there now, else wall); window cells with a cat take the cat code; a table turns codes into words,
and the agent-cell words (one row of an instruction table, one of the chatter table) are OR-ed onto
the centre. Layout draws are cheap: the distinct targets are a row of the reference's table of
all choices, one `randint` holds a cat's room and phase, and the placement is a row of the
reference's table (or its fixed homes).
"""

from typing import Any

import numpy as np
import torch

from envs.base import MOVES
from envs.batched import WINDOW_OFFSETS, BatchedWordGridEnv
from envs.checks import check_int
from envs.instruction import (
    CHATTER_PERIOD,
    PLACEMENTS,
    REPLIES,
    SLOTS_PER_ROOM,
    START,
    TOPICS,
    InstructionEnv,
    check_number,
    niche_cell,
)

FLOOR, WALL, FIRST_CHARACTER = 0, 1, 2  # cell codes; then one per character, then a cat on the floor


class BatchedInstructionEnv(BatchedWordGridEnv):
    """N Instruction envs in torch tensors; rules in `envs.instruction`."""

    reference_class = InstructionEnv
    state_names = ("x", "y", "right", "failed", "wrong", "repeated", "reply")
    curriculum_params = ("delay", "wrong_penalty", "chatter_prob")

    def __init__(
        self, num_envs: int, device: str | torch.device = "cpu", render_mode: str | None = None, **task_kwargs: Any
    ):
        """task_kwargs: the reference env's parameters (`InstructionEnv`), which also holds their defaults."""
        super().__init__(num_envs, device, render_mode, **task_kwargs)
        reference, dev = self.reference, self.device
        self.x = torch.full((num_envs,), START[0], dtype=torch.int64, device=dev)
        self.y = torch.full((num_envs,), START[1], dtype=torch.int64, device=dev)
        self.right = torch.zeros(num_envs, reference.n_instructions, dtype=torch.bool, device=dev)
        self.failed = torch.zeros_like(self.right)
        self.wrong = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.repeated = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.reply = torch.zeros(num_envs, dtype=torch.int64, device=dev)  # 0 none, 1 + index in REPLIES
        self._counts: dict[str, torch.Tensor] = {}
        # the task parameters drawn into new layouts (set_task changes them)
        self._task = {key: getattr(reference, key) for key in self.curriculum_params}
        self._build_tables(reference)

    def _build_tables(self, reference: InstructionEnv) -> None:
        """Geometry and word tables, from the reference env's own grid and words."""
        dev, width, height = self.device, reference.width, reference.height

        def tensor(values: Any, dtype: torch.dtype = torch.int64) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values), dtype=dtype, device=dev)

        self._width = width
        grid, n_slots = reference.static_grid(), SLOTS_PER_ROOM * reference.n_rooms
        cell_ref = np.array(
            [[FLOOR if grid.get(x, y) is None else WALL for x in range(width)] for y in range(height)]
        )  # H x W: what a cell reads as, an index into a row of codes
        adjacent_slot = np.full((height, width), -1)
        for slot in range(n_slots):
            x, y = niche_cell(slot)
            cell_ref[y, x] = FIRST_CHARACTER + slot
            adjacent_slot[1 if y == 0 else height - 2, x] = slot  # the floor cell in front of the niche
        window_refs = np.full((height, width, 9), WALL)  # per agent cell: its window's cell_ref, north row first
        for y in range(1, height - 1):
            for x in range(1, width - 1):
                window_refs[y, x] = [cell_ref[y + dy, x + dx] for dx, dy in WINDOW_OFFSETS]
        self._window_refs = tensor(window_refs.reshape(height * width, 9))  # (H*W) x 9
        self._cell_codes = tensor([FLOOR, WALL] + [WALL] * n_slots).unsqueeze(0)  # 1 x (2 + n_slots)
        self._blocked = tensor(cell_ref.reshape(-1) != FLOOR, torch.bool)  # (H*W,): walls and niches
        self._adjacent_slot = tensor(adjacent_slot.reshape(-1))  # (H*W,) slot index or -1
        self._reach = width + 2  # a cell this far from the agent (in flat index) is outside its window
        window_cell = np.full(2 * self._reach + 1, 9)
        for k, (dx, dy) in enumerate(WINDOW_OFFSETS):
            window_cell[self._reach + dy * width + dx] = k
        self._window_cell = tensor(window_cell)  # flat offset from the agent + reach -> window cell 0..8, or 9
        self._border = tensor([[y * width + x for x, y in border] for border in reference.borders])  # R x 16
        self._dx = tensor([dx for dx, _ in MOVES] + [0] * reference.n_characters)  # per action
        self._dy = tensor([dy for _, dy in MOVES] + [0] * reference.n_characters)
        names = reference.names
        self._cell_words = self.word_table([(), ("wall", "grey"), *((name,) for name in names), ("cat",)])
        self._cat_code = FIRST_CHARACTER + len(names)
        speaker, topic = reference.chatter_speaker, reference.chatter_topic
        self._chatter = self.word_table([(names[s], TOPICS[w]) for s, w in zip(speaker, topic, strict=True)])
        self._chatter_draw = tensor(reference.chatter_draw, torch.float64)  # (CHATTER_PERIOD,): speaks if < prob
        pairs = [("tell", f"to_{target}", f"from_{sender}") for target in names for sender in names]
        self._instruction_words = self.word_table([(), *pairs])  # row 0 no instruction, 1 + target * C + sender
        backs = [(f"back_{name}",) for name in names] if reference.announce_returns else []
        self._return_words = self.word_table([(), *backs])  # row 0 no return, 1 + target
        replies = [(word,) for word in REPLIES] if reference.replies else []
        self._reply_words = self.word_table([(), *replies])  # row 0 no reply, 1 + index in REPLIES
        self._placements = tensor(reference.placements)  # PLACEMENTS x C
        self._targets = tensor(reference.targets)  # C! / (C - K)! x K
        self._fixed_homes = tensor(reference.fixed_homes).expand(self.num_envs, -1)  # N x C
        self._walks_to_slot = tensor(reference.walks_to_slot.reshape(n_slots, -1))  # n_slots x (H*W)
        self._floor_cells = tensor(reference.floor_cells)  # F x 2: where a random start may fall
        self._fixed_start = tensor(START).expand(self.num_envs, -1)  # N x 2
        self._character_codes = FIRST_CHARACTER + torch.arange(reference.n_characters, device=dev)
        self._instruction_slots = torch.arange(reference.n_instructions, device=dev)

    # ----- episodes ----------------------------------------------------------------------------------

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        reference, n, gen, dev, task = self.reference, self.num_envs, self.generator, self.device, self._task
        k, c, w, spacing = reference.n_instructions, reference.n_characters, reference.n_wanderers, self._spacing

        def randint(high: int, *shape: int) -> torch.Tensor:
            return torch.randint(0, high, (n, *shape), generator=gen, device=dev)

        targets = self._targets.index_select(0, randint(len(self._targets)))  # N x K, distinct in each row
        walks = randint(reference.n_rooms * self._border.shape[1], w)  # one draw holds each cat's room and phase
        homes = self._placements.index_select(0, randint(PLACEMENTS)) if reference.random_homes else self._fixed_homes
        start = self._floor_cells.index_select(0, randint(len(self._floor_cells))) if reference.random_start else None
        return {
            "homes": homes,
            "start": self._fixed_start if start is None else start,  # N x 2
            "times": self._instruction_slots * spacing + randint(spacing, k),
            "targets": targets,
            "senders": (targets + 1 + randint(c - 1, k)) % c,
            "wanderer_rooms": walks // self._border.shape[1],
            "wanderer_phases": walks % self._border.shape[1],
            "chatter_offset": randint(CHATTER_PERIOD),
            "delay": torch.full((n,), task["delay"], dtype=torch.int64, device=dev),
            "wrong_penalty": torch.full((n,), task["wrong_penalty"], dtype=torch.float64, device=dev),
            "chatter_prob": torch.full((n,), task["chatter_prob"], dtype=torch.float64, device=dev),
        }

    @property
    def _spacing(self) -> int:
        return self.reference.spacing(self._task["delay"])

    def _set_task(self, params: dict[str, Any]) -> None:
        """New `delay` (whose schedule spacing follows), `wrong_penalty` or `chatter_prob` for the
        episodes drawn from now on; a running episode keeps the values in its layout."""
        checked = dict(self._task)
        if "delay" in params:
            checked["delay"] = check_int("delay", params["delay"], 1, self.reference.max_delay)
        if "wrong_penalty" in params:
            checked["wrong_penalty"] = check_number("wrong_penalty", params["wrong_penalty"], 0.0)
        if "chatter_prob" in params:
            checked["chatter_prob"] = check_number("chatter_prob", params["chatter_prob"], 0.0, 1.0)
        self._task = checked

    def _begin_episodes(self, new: torch.Tensor) -> None:
        start = self.layouts["start"]  # N x 2
        self.x = torch.where(new, start[:, 0], self.x)
        self.y = torch.where(new, start[:, 1], self.y)
        self.right.masked_fill_(new.unsqueeze(1), False)
        self.failed.masked_fill_(new.unsqueeze(1), False)
        self.wrong.masked_fill_(new, 0)
        self.repeated.masked_fill_(new, 0)
        self.reply.masked_fill_(new, 0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, _ = super().reset(seed=seed, options=options)
        return obs, self.counters(self.step_count)

    def step(self, actions: torch.Tensor | np.ndarray):
        obs, reward, terminated, truncated, info = super().step(actions)
        return obs, reward, terminated, truncated, {**info, **self._counts}

    def counters(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Instruction accuracy so far, per env (N,) int64, with instructions shown up to step count t."""
        return {
            "instructions_received": (self.layouts["times"] <= t.unsqueeze(1)).sum(1),
            "instructions_right": self.right.sum(1),
            "instructions_failed": self.failed.sum(1),
            "instructions_wrong": self.wrong.clone(),
            "instructions_repeated": self.repeated.clone(),
        }

    # ----- rules -----------------------------------------------------------------------------------------

    def _away(self, t: torch.Tensor) -> torch.Tensor:
        """N x K bool: which instructions keep their target away at step count t (N,)."""
        times, t = self.layouts["times"], t.unsqueeze(1)
        return (times <= t) & (t < times + self.layouts["delay"].unsqueeze(1))

    def _present(self, t: torch.Tensor) -> torch.Tensor:
        """N x C bool: which characters stand in their niche at step count t (N,)."""
        c = self.reference.n_characters
        absent = torch.zeros(self.num_envs, c + 1, dtype=torch.bool, device=self.device)
        absent.scatter_(1, self.layouts["targets"].masked_fill(~self._away(t), c), True)  # N x C+1, C: nobody
        return ~absent[:, :-1]

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, layouts = self.step_count, self.layouts  # t: the observation the agent acted on
        walk_before = self._walk_to_ready(t) if self.reference.walk_bonus else None
        speech = actions >= len(MOVES)
        slot = self._adjacent_slot.take(self.y * self._width + self.x)  # N, -1 where no niche is adjacent
        in_slot = layouts["homes"] == slot.unsqueeze(1)  # N x C, at most one: the listener
        heard = speech & (in_slot & self._present(t)).any(1)  # N: a present character next to the agent
        about_listener = layouts["targets"] == in_slot.long().argmax(1, keepdim=True)  # N x K, at most one
        returned = layouts["times"] + layouts["delay"].unsqueeze(1) <= t.unsqueeze(1)  # N x K
        resolved = self.right | self.failed  # N x K, before this speech
        served = heard & (about_listener & resolved).any(1)  # N: said to a character already dealt with
        ready = about_listener & returned & ~resolved & heard.unsqueeze(1)  # N x K
        said_sender = layouts["senders"] == (actions - len(MOVES)).unsqueeze(1)  # N x K
        self.right |= ready & said_sender
        self.failed |= ready & ~said_sender
        right = (ready & said_sender).any(1)
        wrong = heard & ~right & (layouts["wrong_penalty"] > 0)  # N: free speech is no mistake
        self.wrong += wrong
        self.repeated += served & (layouts["wrong_penalty"] > 0)
        self.reply = torch.where(heard, torch.where(right, 1, 2), 0)  # N, read by _observe when replies are on
        reward = right.double() - wrong * layouts["wrong_penalty"]  # N float64: 0, +1 or -wrong_penalty
        x, y = self.x + self._dx.take(actions), self.y + self._dy.take(actions)
        stay = self._blocked.take(y * self._width + x)
        self.x, self.y = torch.where(stay, self.x, x), torch.where(stay, self.y, y)
        if self.reference.walk_bonus:
            reward += self.reference.walk_bonus * (walk_before - self._walk_to_ready(t + 1)).double()
        terminated = (self.right | self.failed).all(1)
        self._counts = self.counters(self.step_count + 1)
        return reward.float(), terminated, self.right.all(1) & (self.wrong == 0)

    def _walk_to_ready(self, t: torch.Tensor) -> torch.Tensor:
        """N int64: the fewest moves from the agent to the front cell of a ready instruction's target at
        step count t (N,), 0 when nothing is ready (the reference's `walk_to_ready`)."""
        layouts = self.layouts
        returned = layouts["times"] + layouts["delay"].unsqueeze(1) <= t.unsqueeze(1)  # N x K
        ready = returned & ~self.right & ~self.failed  # N x K
        slots = layouts["homes"].gather(1, layouts["targets"])  # N x K: each target's niche slot
        agent = (self.y * self._width + self.x).unsqueeze(1)  # N x 1, flat cell index
        walks = self._walks_to_slot[slots, agent]  # N x K
        nearest = walks.masked_fill(~ready, torch.iinfo(torch.int64).max).min(1).values  # N
        return torch.where(ready.any(1), nearest, 0)

    # ----- observation --------------------------------------------------------------------------------

    def _observe(self) -> torch.Tensor:
        n, t = self.num_envs, self.step_count
        agent = self.y * self._width + self.x  # N, flat cell index
        character_codes = torch.where(self._present(t), self._character_codes, WALL)  # N x C
        cell_codes = self._cell_codes.expand(n, -1).clone()  # N x (2 + n_slots): floor, wall, then the niches
        cell_codes.scatter_(1, FIRST_CHARACTER + self.layouts["homes"], character_codes)  # homes are distinct slots
        codes = cell_codes.gather(1, self._window_refs.index_select(0, agent))  # N x 9
        codes.masked_fill_(self._cats_in_window(t, agent), self._cat_code)  # cats walk on floor only
        return self.encode_cells(self._cell_words, codes.view(n, 3, 3), self._agent_cell_words(t))

    def _cats_in_window(self, t: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """N x 9 bool: the window cells where a cat is at step count t (N,), the agent at flat cell `agent`."""
        layouts, border = self.layouts, self._border.shape[1]
        phases = (layouts["wanderer_phases"] + t.unsqueeze(1)) % border  # N x W
        cats = self._border.take(layouts["wanderer_rooms"] * border + phases)  # N x W flat cell index
        offset = cats - agent.unsqueeze(1) + self._reach  # N x W, in [0, 2 reach] if near
        window_cell = self._window_cell.take(offset.clamp_(0, 2 * self._reach))  # N x W, 9 where outside the window
        seen = torch.zeros(self.num_envs, 10, dtype=torch.bool, device=self.device)
        return seen.scatter_(1, window_cell, True)[:, :9]

    def _agent_cell_words(self, t: torch.Tensor) -> torch.Tensor:
        """N x V int8: the instruction shown at step count t (N,), if any, the return announced, and the chatter."""
        layouts, c = self.layouts, self.reference.n_characters
        shown = layouts["times"] == t.unsqueeze(1)  # N x K, at most one: the drawn times are distinct
        pair = layouts["targets"] * c + layouts["senders"] + 1  # N x K, row of the instruction table
        instruction = (shown * pair).sum(1)  # N, row 0: no instruction
        chatter = (layouts["chatter_offset"] + t) % CHATTER_PERIOD  # N
        speaks = self._chatter_draw.take(chatter) < layouts["chatter_prob"]  # N
        chatter_words = self._chatter.index_select(0, chatter) * speaks.unsqueeze(1).to(torch.int8)  # N x V
        words = self._instruction_words.index_select(0, instruction) | chatter_words
        if self.reference.announce_returns:
            back = layouts["times"] + layouts["delay"].unsqueeze(1) == t.unsqueeze(1)  # N x K, at most one
            returned = (back * (layouts["targets"] + 1)).sum(1)  # N, row 0: nobody returns now
            words |= self._return_words.index_select(0, returned)
        if self.reference.replies:
            words |= self._reply_words.index_select(0, self.reply)
        return words

    def reference_view(self, i: int) -> InstructionEnv:
        reference = self.reference
        reference.reset(options={"layout": self.layout(i)})
        reference.agent_pos = (int(self.x[i]), int(self.y[i]))
        reference.right = self.right[i].tolist()
        reference.failed = self.failed[i].tolist()
        reference.wrong = int(self.wrong[i])
        reference.repeated = int(self.repeated[i])
        reply = int(self.reply[i])
        reference.reply = REPLIES[reply - 1] if reference.replies and reply else None
        reference.step_count = int(self.step_count[i])
        reference._place_objects(reference.step_count)
        return reference
