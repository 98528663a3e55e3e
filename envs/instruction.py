"""Instruction (a gridworld version of the Expire-Span paper's LIGHT instruction task, section 5.2):
remember a few instructions for hundreds of steps through a stream of distractors, then carry them out.

Rules:
- `n_rooms` rooms (default 4), each a 5x5 floor walled in, in one row from west to east; neighbouring
  rooms share a wall with a doorway (an open cell) in its middle. The agent starts each episode at the
  centre of the first (westmost) room.
- Characters: `n_characters` (default 8) of butler, guard, cook, merchant, knight, wizard, priest,
  farmer (in that order), each standing in a niche of a room's north or south wall. Every room has 4
  niche slots: the 2nd and 4th cells of its north wall and of its south wall (slot 4 r + j of room r:
  j = 0, 1 north, j = 2, 3 south, west first), so each floor cell touches at most one niche. Where
  the characters stand is drawn per episode, uniformly among `PLACEMENTS` (16384) random placements
  in distinct slots, a fixed table drawn once from a fixed seed (cheap to draw for many envs at once).
  A character's niche reads as its name (e.g. `butler`); while the character is away, it reads as a
  wall. Niches block moves.
- Actions: 0 north, 1 east, 2 south, 3 west (moving into a wall or a niche leaves the agent in
  place), then one speech action per character, `4 + s` = `say_<s>`: "tell the character next to me
  that character s wants to see them".
- Instructions: `n_instructions` (default 4) per episode. Instruction k is drawn with a time t_k, a
  target and a sender (a character other than the target). The schedule spreads them: with
  S = (max_steps - delay) // (n_instructions + 1), t_k = k S + U{0..S-1}. The observation at step
  count t_k (the reset obs when t_k = 0) shows on the agent's own cell, for that one step only, the
  words `tell`, `to_<target>` and `from_<sender>`: the roles have words of their own, so the target
  and the sender can never be confused. From then on the instruction is pending.
- Distance: the target leaves at t_k and stays away (its niche a wall) while t_k <= t < t_k + delay
  (t the step count of the observation), then comes back. So an instruction can be carried out no
  sooner than `delay` (default 300) steps after it was shown; the schedule leaves at least S steps
  after the last return. A character is away while any of its instructions keeps it away.
- Speech: a speech action `say_<s>` taken on the observation of step count t is heard by the present
  character c in a niche next to the agent (4-neighbour), if any. If an instruction pending at t has
  target c and sender s, the earliest such one is executed: reward +1 and it is no longer pending.
  Any other speech action (no such instruction, the target away, nobody there) is wrong: reward
  -`wrong_penalty` (default 0.1). Several instructions may be pending at once.
- Distractors: `n_wanderers` (default 4) cats walk around the floor border (16 cells) of their
  room, clockwise, one cell per step, from a per-episode room and phase; the agent walks over them
  (both words show on its cell). Chatter: at some steps the agent's cell shows a character's name
  (the speaker, a plain name, never a `to_`/`from_` word) and a topic word (hello, gold, dragon,
  bread, rain, song, war, rumour). Chatter follows a fixed table of `CHATTER_PERIOD` entries, drawn
  once from a fixed seed (a fraction `chatter_prob` (default 0.5) of them have chatter) and read
  from a per-episode offset: step count t shows entry (offset + t) mod `CHATTER_PERIOD`.
- Episode end: carrying out all `n_instructions` right ends it (terminated); the time limit
  `max_steps` (default 1000) truncates it. A success is an episode that ends with every instruction
  executed right and no wrong speech action.
- `info` at every step (and reset) counts, in the episode so far: `instructions_received` (shown up
  to and including this observation), `instructions_right` and `instructions_wrong` (wrong speech
  actions); the instruction accuracy is right / (right + wrong).

Layout (`reset(options={"layout": ...})`), int64 arrays: `homes` (n_characters,) the niche slot of
each character; `times`, `targets`, `senders` (n_instructions,) the schedule (drawn times are
distinct, which the batched twin relies on); `wanderer_rooms`, `wanderer_phases` (n_wanderers,)
where each cat walks (phase: its border cell at step 0, 0 the room's north-west floor cell,
clockwise); `chatter_offset` (scalar).
"""

import functools
import numbers
from typing import Any, SupportsFloat

import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_NAMES
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Key, WorldObj

from envs.base import MOVES, OUTSIDE, WordGridEnv, filled_grid
from envs.checks import check_int

CHARACTERS = ("butler", "guard", "cook", "merchant", "knight", "wizard", "priest", "farmer")
TOPICS = ("hello", "gold", "dragon", "bread", "rain", "song", "war", "rumour")
ROOM_SIZE = 5
ROOM_PITCH = ROOM_SIZE + 1  # rooms share their east-west walls
GRID_HEIGHT = ROOM_SIZE + 2
DOORWAY_Y = GRID_HEIGHT // 2
NICHE_DX = (2, 4)  # niche x offsets from a room's west wall: the 2nd and 4th cells of its wall
NICHE_Y = (0, GRID_HEIGHT - 1)  # north wall, south wall
SLOTS_PER_ROOM = len(NICHE_DX) * len(NICHE_Y)
START = (ROOM_PITCH // 2, DOORWAY_Y)  # centre of the first room
CHATTER_PERIOD = 1024
PLACEMENTS = 16384
TABLE_SEED = 0  # the fixed chatter and placement tables are drawn from it


def niche_cell(slot: int) -> tuple[int, int]:
    """Grid (x, y) of niche slot `slot`: room slot // 4, north wall for slot % 4 < 2, west one first."""
    room, j = divmod(slot, SLOTS_PER_ROOM)
    return room * ROOM_PITCH + NICHE_DX[j % 2], NICHE_Y[j // 2]


def border_cells(room: int) -> list[tuple[int, int]]:
    """The 16 floor cells along the walls of `room`, clockwise from its north-west floor cell."""
    x0, y0 = room * ROOM_PITCH + 1, 1
    last = ROOM_SIZE - 1
    north = [(x0 + i, y0) for i in range(ROOM_SIZE)]
    east = [(x0 + last, y0 + i) for i in range(1, ROOM_SIZE)]
    south = [(x0 + i, y0 + last) for i in range(last - 1, -1, -1)]
    west = [(x0, y0 + i) for i in range(last - 1, 0, -1)]
    return north + east + south + west


@functools.cache
def placement_table(n_slots: int, n_characters: int) -> np.ndarray:
    """PLACEMENTS x n_characters: fixed random placements of the characters in distinct niche slots."""
    rng = np.random.default_rng(TABLE_SEED)
    return rng.random((PLACEMENTS, n_slots)).argsort(1)[:, :n_characters]


def chatter_table(n_characters: int, chatter_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """The fixed chatter: speaker (-1 for no chatter) and topic of each of the CHATTER_PERIOD entries."""
    rng = np.random.default_rng(TABLE_SEED)
    speaks = rng.random(CHATTER_PERIOD) < chatter_prob
    speaker = np.where(speaks, rng.integers(n_characters, size=CHATTER_PERIOD), -1)
    return speaker, rng.integers(len(TOPICS), size=CHATTER_PERIOD)


def check_number(name: str, value: object, low: float, high: float | None = None) -> float:
    """`value` as a float in [low, high] (high None: no upper bound), else a ValueError naming `name`."""
    allowed = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not low <= value <= (high if high is not None else np.inf):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)


class Character(Ball):
    """A character in its niche: drawn as a ball of its own colour, described by its name."""

    def __init__(self, index: int):
        super().__init__(COLOR_NAMES[index % len(COLOR_NAMES)])
        self.index = index
        self.words = (CHARACTERS[index],)
        self.ansi = CHARACTERS[index][0].upper()


class Wanderer(Key):
    """A cat walking the border of its room; the agent walks over it."""

    words = ("cat",)
    ansi = "c"

    def __init__(self):
        super().__init__("purple")

    def can_overlap(self) -> bool:
        return True


class InstructionEnv(WordGridEnv):
    """The Instruction task; rules in the module docstring."""

    def __init__(
        self,
        n_rooms: int = 4,
        n_characters: int = 8,
        n_instructions: int = 4,
        delay: int = 300,
        wrong_penalty: float = 0.1,
        n_wanderers: int = 4,
        chatter_prob: float = 0.5,
        max_steps: int = 1000,
        render_mode: str | None = None,
    ):
        self.n_rooms = check_int("n_rooms", n_rooms, 1)
        self.n_characters = check_int("n_characters", n_characters, 2, min(len(CHARACTERS), SLOTS_PER_ROOM * n_rooms))
        self.n_instructions = check_int("n_instructions", n_instructions, 1)
        check_int("max_steps", max_steps, n_instructions + 2)
        self.delay = check_int("delay", delay, 1, max_steps - n_instructions - 1)
        self.wrong_penalty = check_number("wrong_penalty", wrong_penalty, 0.0)
        self.n_wanderers = check_int("n_wanderers", n_wanderers, 0)
        check_number("chatter_prob", chatter_prob, 0.0, 1.0)
        self.names = CHARACTERS[:n_characters]
        self.task_words = (
            "cat",
            *self.names,
            "tell",
            *(f"to_{name}" for name in self.names),
            *(f"from_{name}" for name in self.names),
            *TOPICS,
        )
        self.n_actions = len(MOVES) + n_characters
        super().__init__(
            width=ROOM_PITCH * n_rooms + 1, height=GRID_HEIGHT, max_steps=max_steps, render_mode=render_mode
        )
        self.spacing = (max_steps - delay) // (n_instructions + 1)
        n_slots = SLOTS_PER_ROOM * n_rooms

        def ints(high: int, *shape: int) -> spaces.Box:
            return spaces.Box(0, high, shape=shape, dtype=np.int64)

        self.layout_space = spaces.Dict(
            {
                "homes": ints(n_slots - 1, n_characters),
                "times": ints(max_steps - delay - 1, n_instructions),
                "targets": ints(n_characters - 1, n_instructions),
                "senders": ints(n_characters - 1, n_instructions),
                "wanderer_rooms": ints(n_rooms - 1, n_wanderers),
                "wanderer_phases": ints(len(border_cells(0)) - 1, n_wanderers),
                "chatter_offset": ints(CHATTER_PERIOD - 1),
            }
        )
        self.chatter_speaker, self.chatter_topic = chatter_table(n_characters, chatter_prob)
        self.placements = placement_table(n_slots, n_characters)
        self.characters = [Character(c) for c in range(n_characters)]
        self.wanderers = [Wanderer() for _ in range(n_wanderers)]
        self.borders = [border_cells(room) for room in range(n_rooms)]
        # the episode, from its layout (see _gen_grid)
        self.schedule: list[tuple[int, int, int]] = []  # per instruction: (time, target, sender)
        self.niches: list[tuple[int, int]] = []  # per character: its niche cell
        self.walks: list[tuple[list[tuple[int, int]], int]] = []  # per cat: (its room's border, phase)
        self.chatter_offset = 0
        self.executed: list[bool] = []  # per instruction
        self.wrong = 0

    # ----- episode ------------------------------------------------------------------------------------

    def sample_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k, c, w = self.n_instructions, self.n_characters, self.n_wanderers
        targets = rng.integers(c, size=k)
        return {
            "homes": self.placements[rng.integers(PLACEMENTS)],
            "times": np.arange(k) * self.spacing + rng.integers(self.spacing, size=k),
            "targets": targets,
            "senders": (targets + 1 + rng.integers(c - 1, size=k)) % c,
            "wanderer_rooms": rng.integers(self.n_rooms, size=w),
            "wanderer_phases": rng.integers(len(self.borders[0]), size=w),
            "chatter_offset": np.array(rng.integers(CHATTER_PERIOD)),
        }

    def static_grid(self) -> Grid:
        """The rooms and their doorways, every niche walled up: what never changes."""
        grid = filled_grid(self.width, self.height)
        for room in range(self.n_rooms):
            for y in range(1, ROOM_SIZE + 1):
                for x in range(room * ROOM_PITCH + 1, (room + 1) * ROOM_PITCH):
                    grid.set(x, y, None)
            if room > 0:
                grid.set(room * ROOM_PITCH, DOORWAY_Y, None)
        return grid

    def _gen_grid(self, width: int, height: int) -> None:
        layout = self.layout
        self.schedule = list(zip(*(layout[key].tolist() for key in ("times", "targets", "senders")), strict=True))
        self.niches = [niche_cell(slot) for slot in layout["homes"].tolist()]  # per character
        self.walks = [
            (self.borders[room], phase)
            for room, phase in zip(layout["wanderer_rooms"].tolist(), layout["wanderer_phases"].tolist(), strict=True)
        ]
        self.chatter_offset = int(layout["chatter_offset"])
        self.grid = self.static_grid()
        self.agent_pos = START
        self.executed = [False] * self.n_instructions
        self.wrong = 0
        for wanderer in self.wanderers:
            wanderer.cur_pos = None  # the grid is new: nothing to clear
        self._place_objects(0)

    def present(self, t: int) -> list[bool]:
        """Per character: does it stand in its niche at step count t?"""
        away = {target for time, target, _ in self.schedule if time <= t < time + self.delay}
        return [c not in away for c in range(self.n_characters)]

    def _place_objects(self, t: int) -> None:
        """Put the characters and cats where they are at step count t."""
        for character, niche, here in zip(self.characters, self.niches, self.present(t), strict=True):
            self.grid.set(*niche, character if here else OUTSIDE)
        for wanderer in self.wanderers:
            if wanderer.cur_pos is not None:
                self.grid.set(*wanderer.cur_pos, None)
        for wanderer, (border, phase) in zip(self.wanderers, self.walks, strict=True):
            wanderer.cur_pos = border[(phase + t) % len(border)]
            self.grid.set(*wanderer.cur_pos, wanderer)

    # ----- acting --------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, _ = super().reset(seed=seed, options=options)
        return obs, self.counters()

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, self.counters()

    def _act(self, action: int) -> tuple[float, bool]:
        t = self.step_count - 1  # the step count of the observation the agent acted on
        reward = self._speak(action - len(MOVES), t) if action >= len(MOVES) else super()._act(action)[0]
        self._place_objects(self.step_count)
        return reward, all(self.executed)

    def _speak(self, sender: int, t: int) -> float:
        """Say "`sender` wants to see you" to the character next to the agent; the reward."""
        listener = self.adjacent_character()
        for k, (time, target, sent_by) in enumerate(self.schedule):
            if time <= t and not self.executed[k] and (target, sent_by) == (listener, sender):
                self.executed[k] = True
                return 1.0
        self.wrong += 1
        return -self.wrong_penalty

    def adjacent_character(self) -> int | None:
        """The index of the character standing next to the agent (4-neighbour), if any."""
        x, y = self.agent_pos
        for dx, dy in MOVES:
            obj = self.cell(x + dx, y + dy)
            if isinstance(obj, Character):
                return obj.index
        return None

    def counters(self) -> dict[str, int]:
        """Instruction accuracy so far in this episode."""
        return {
            "instructions_received": sum(time <= self.step_count for time, _, _ in self.schedule),
            "instructions_right": sum(self.executed),
            "instructions_wrong": self.wrong,
        }

    # ----- observation and rendering -----------------------------------------------------------------

    def agent_cell_words(self) -> tuple[str, ...]:
        t, words = self.step_count, ()
        for time, target, sender in self.schedule:
            if time == t:
                words += ("tell", f"to_{self.names[target]}", f"from_{self.names[sender]}")
        entry = (self.chatter_offset + t) % CHATTER_PERIOD
        if self.chatter_speaker[entry] >= 0:
            words += (self.names[self.chatter_speaker[entry]], TOPICS[self.chatter_topic[entry]])
        return words

    @staticmethod
    def _ansi_char(obj: WorldObj | None) -> str:
        return getattr(obj, "ansi", None) or WordGridEnv._ansi_char(obj)
