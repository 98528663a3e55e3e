"""Every rule of the Instruction task (envs/instruction.py), on the reference env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.instruction import (
    CHARACTERS,
    TOPICS,
    InstructionEnv,
    Wanderer,
    border_cells,
    fixed_homes,
    front_cell,
    niche_cell,
)

NORTH, EAST, SOUTH, WEST = range(4)
QUIET = {"n_wanderers": 0, "chatter_prob": 0.0}  # no distractors, so the words under test stand alone


def _words(env, obs, row=1, col=1):
    return {env.vocab[k] for k in np.flatnonzero(obs[row, col])}


def _say(sender):
    """The speech action "say_<sender>"."""
    return 4 + CHARACTERS.index(sender)


def _layout(
    env,
    times,
    targets,
    senders,
    homes=None,
    start=(3, 3),
    wanderer_rooms=(),
    wanderer_phases=(),
    chatter_offset=0,
    delay=None,
    wrong_penalty=None,
    chatter_prob=None,
):
    """A layout for `env`: by default character c stands in niche slot c (room c // 4), and the task
    parameters are the env's."""
    return {
        "homes": np.arange(env.n_characters) if homes is None else np.array(homes),
        "start": np.array(start),
        "times": np.array(times),
        "targets": np.array(targets),
        "senders": np.array(senders),
        "wanderer_rooms": np.array(wanderer_rooms, dtype=np.int64),
        "wanderer_phases": np.array(wanderer_phases, dtype=np.int64),
        "chatter_offset": np.array(chatter_offset),
        "delay": np.array(env.delay if delay is None else delay),
        "wrong_penalty": np.array(env.wrong_penalty if wrong_penalty is None else wrong_penalty),
        "chatter_prob": np.array(env.chatter_prob if chatter_prob is None else chatter_prob),
    }


def _go_to_slot_0(env):
    """From the start (3, 3), walk to (2, 1), the floor cell in front of niche slot 0 (2, 0)."""
    for action in (NORTH, NORTH, WEST):
        obs, reward, *_ = env.step(action)
        assert reward == 0
    assert env.agent_pos == (2, 1) and niche_cell(0) == (2, 0) and front_cell(0) == (2, 1)
    return obs


def _wait(env, steps):
    """Bump into the north wall `steps` times (the agent stays in place)."""
    for _ in range(steps):
        obs, *_ = env.step(NORTH)
    return obs


@pytest.mark.parametrize("render_mode", ["rgb_array", "ansi"])
def test_passes_the_gymnasium_env_checker(render_mode):
    check_env(gym.make("Instruction-v0", render_mode=render_mode).unwrapped, skip_render_check=False)


def test_defaults_vocabulary_and_actions():
    env = InstructionEnv()
    obs, info = env.reset(seed=0)
    assert (env.n_rooms, env.n_characters, env.n_instructions, env.delay, env.max_steps) == (4, 8, 4, 300, 1000)
    assert env.random_homes and (env.wrong_penalty, env.chatter_prob) == (0.1, 0.5)
    assert env.action_space.n == 4 + 8 and obs.shape == (3, 3, len(env.vocab)) and obs.dtype == np.int8
    roles = {"tell", *(f"to_{name}" for name in CHARACTERS), *(f"from_{name}" for name in CHARACTERS)}
    assert roles | set(CHARACTERS) | set(TOPICS) | {"cat", "agent", "wall", "door"} <= set(env.vocab)
    assert info == {
        "instructions_received": 0,
        "instructions_right": 0,
        "instructions_failed": 0,
        "instructions_wrong": 0,
        "instructions_repeated": 0,
    }
    assert env.agent_pos == (3, 3) and (env.width, env.height) == (25, 7)
    static = env.static_grid()
    assert [x for x in range(25) if static.get(x, 3) is None] == list(range(1, 24))  # rooms and doorways
    assert [x for x in range(25) if static.get(x, 2) is None] == [x for x in range(1, 24) if x % 6]  # walls between


def test_reset_is_deterministic_and_draws_valid_schedules():
    a, b = InstructionEnv(), InstructionEnv()
    seen = set()
    for seed in range(100):
        obs_a, _ = a.reset(seed=seed)
        obs_b, _ = b.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        for key in a.layout:
            np.testing.assert_array_equal(a.layout[key], b.layout[key])
        layout, spacing = a.layout, (1000 - 300) // 5
        assert len(set(layout["homes"])) == 8 and len(set(layout["targets"])) == 4
        assert np.all(layout["targets"] != layout["senders"])
        assert np.all(layout["times"] // spacing == np.arange(4))  # instruction k in [k S, (k + 1) S)
        assert (layout["delay"], layout["wrong_penalty"], layout["chatter_prob"]) == (300, 0.1, 0.5)
        seen.add(tuple(layout["homes"]))
    assert len(seen) > 95  # 16384 placements: a rare repeat is a birthday coincidence


def test_fixed_homes_are_one_map_spread_over_the_rooms():
    env = InstructionEnv(n_rooms=2, n_characters=5, n_instructions=3, random_homes=False)
    for seed in range(20):
        env.reset(seed=seed)
        np.testing.assert_array_equal(env.layout["homes"], [0, 4, 3, 7, 1])  # rooms 0, 1, 0, 1, 0
    assert [niche_cell(slot) for slot in (0, 4, 3, 7, 1)] == [(2, 0), (8, 0), (4, 6), (10, 6), (4, 0)]
    np.testing.assert_array_equal(fixed_homes(4, 8), [0, 4, 8, 12, 3, 7, 11, 15])  # two per room, opposite walls
    np.testing.assert_array_equal(fixed_homes(1, 4), [0, 3, 1, 2])


def test_an_instruction_shows_on_the_agent_cell_for_one_step_only():
    env = InstructionEnv(**QUIET)
    obs, info = env.reset(options={"layout": _layout(env, [3, 50, 60, 70], [1, 2, 3, 4], [5, 6, 7, 0])})
    cells = [_words(env, obs)]
    for _ in range(5):
        obs, _, _, _, info = env.step(EAST)
        cells.append(_words(env, obs))
        assert info["instructions_received"] == (env.step_count >= 3)
    assert cells[3] == {"agent", "tell", "to_guard", "from_wizard"}
    assert all(cell == {"agent"} for t, cell in enumerate(cells) if t != 3)


def test_a_return_is_announced_on_the_agent_cell_only_with_announce_returns():
    layout = [[3, 50, 60, 70], [1, 2, 3, 4], [5, 6, 7, 0]]
    cells = {}
    for announce in (False, True):
        env = InstructionEnv(delay=10, announce_returns=announce, **QUIET)
        obs, _ = env.reset(options={"layout": _layout(env, *layout)})
        cells[announce] = [_words(env, obs)]
        for _ in range(15):
            obs, *_ = env.step(EAST)
            cells[announce].append(_words(env, obs))
        assert ("back_guard" in env.vocab) == announce
    assert cells[True][13] == {"agent", "back_guard"}  # the guard's instruction came at 3, it returns at 3 + 10
    assert all(cell == cells[False][t] for t, cell in enumerate(cells[True]) if t != 13)
    assert cells[False][13] == {"agent"}


def test_a_random_start_falls_on_every_floor_cell_and_a_fixed_one_on_the_centre():
    starts = {}
    for random_start in (False, True):
        env = InstructionEnv(n_rooms=2, n_characters=4, random_start=random_start, **QUIET)
        starts[random_start] = set()
        for seed in range(600):
            env.reset(seed=seed)
            starts[random_start].add(tuple(int(v) for v in env.agent_pos))
            assert env.grid.get(*env.agent_pos) is None or env.grid.get(*env.agent_pos).can_overlap()
    assert starts[False] == {(3, 3)}
    floor = {(x, y) for x in range(1, 12) for y in range(1, 6) if x != 6} | {(6, 3)}  # two rooms and the doorway
    assert starts[True] == floor


def test_a_layout_that_starts_the_agent_in_a_wall_is_refused():
    env = InstructionEnv(**QUIET)
    layout = _layout(env, [3, 50, 60, 70], [1, 2, 3, 4], [5, 6, 7, 0], start=(6, 1))  # the wall between rooms
    with pytest.raises(ValueError, match=r"layout\['start'\] = array\(\[6, 1\]\) must be a floor cell"):
        env.reset(options={"layout": layout})
    obs, _ = env.reset(options={"layout": {**layout, "start": np.array([7, 1])}})
    assert env.agent_pos == (7, 1) and _words(env, obs, 0, 1) == {"wall", "grey"}  # the second room's north wall


def test_the_target_is_away_for_delay_steps_then_the_right_sender_is_rewarded_once():
    env = InstructionEnv(delay=20, **QUIET)
    env.reset(options={"layout": _layout(env, [5, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    obs = _go_to_slot_0(env)  # step count 3: the butler stands in slot 0, north of the agent
    assert _words(env, obs, 0, 1) == {"butler"}
    obs = _wait(env, 2)  # step count 5: the instruction, and the butler has left
    assert {"tell", "to_butler", "from_guard"} <= _words(env, obs) and _words(env, obs, 0, 1) == {"wall", "grey"}
    for t in range(5, 25):  # away while 5 <= t < 25: speech to the empty niche does nothing
        obs, reward, _, _, info = env.step(_say("guard"))
        assert reward == 0 and info["instructions_wrong"] == 0
        assert _words(env, obs, 0, 1) == ({"butler"} if t + 1 == 25 else {"wall", "grey"})
    _, reward, terminated, _, info = env.step(_say("guard"))  # acting on step count 25 = 5 + delay
    assert reward == 1 and not terminated and info["instructions_right"] == 1 and env.right[0]
    _, reward, _, _, info = env.step(_say("guard"))  # carried out: nothing is ready any more
    assert reward == pytest.approx(-0.1) and info["instructions_right"] == 1 and info["instructions_wrong"] == 1
    assert info["instructions_repeated"] == 1  # said again to a character already dealt with


def test_a_wrong_sender_fails_the_instruction_for_good():
    env = InstructionEnv(delay=2, wrong_penalty=0.5, **QUIET)
    env.reset(options={"layout": _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    _go_to_slot_0(env)  # step count 3: the butler is back and its instruction ready
    assert env.ready(3) == [True, False, False, False]
    _, reward, terminated, _, info = env.step(_say("cook"))
    assert reward == -0.5 and not terminated and env.failed == [True, False, False, False]
    assert info == {
        "instructions_received": 1,
        "instructions_right": 0,
        "instructions_failed": 1,
        "instructions_wrong": 1,
        "instructions_repeated": 0,
    }
    _, reward, _, _, info = env.step(_say("guard"))  # the right sender, too late: nothing is ready
    assert reward == -0.5 and info == {
        "instructions_received": 1,
        "instructions_right": 0,
        "instructions_failed": 1,
        "instructions_wrong": 2,
        "instructions_repeated": 1,
    }


def test_speech_to_nobody_is_silent_and_to_a_character_with_nothing_ready_is_penalised():
    env = InstructionEnv(delay=2, wrong_penalty=0.5, **QUIET)
    env.reset(options={"layout": _layout(env, [40, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    for action in range(4, 12):  # at the start, no niche is next to the agent
        _, reward, *_ = env.step(action)
        assert reward == 0
    env.step(NORTH)
    env.step(NORTH)
    env.step(EAST)  # (4, 1): in front of slot 1, the guard, who is no target
    assert env.adjacent_character() == 1
    _, reward, *_ = env.step(_say("butler"))
    assert reward == -0.5
    env.step(WEST)
    env.step(WEST)  # in front of the butler, whose instruction is not shown yet (step count 40)
    _, reward, _, _, info = env.step(_say("guard"))
    assert reward == -0.5 and info["instructions_wrong"] == 2 and not any(env.failed)
    env.step(EAST)  # (3, 1) touches no niche: speech there is silent
    _, reward, _, _, info = env.step(_say("guard"))
    assert reward == 0 and info["instructions_wrong"] == 2
    env.step(WEST)
    _wait(env, 42 - env.step_count)  # step count 42 = 40 + delay: the butler is back
    _, reward, _, _, info = env.step(_say("guard"))  # the earlier speech did not spend its one attempt
    assert reward == 1 and info == {
        "instructions_received": 1,
        "instructions_right": 1,
        "instructions_failed": 0,
        "instructions_wrong": 2,
        "instructions_repeated": 0,
    }


def test_a_heard_speech_is_answered_on_the_next_observation_only_with_replies():
    cells = {}
    for replies in (False, True):
        env = InstructionEnv(delay=2, wrong_penalty=0.5, replies=replies, **QUIET)
        env.reset(options={"layout": _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
        _go_to_slot_0(env)  # step count 3: the butler is back and its instruction ready
        cells[replies] = []
        for action in (_say("guard"), NORTH, _say("guard"), EAST, _say("cook")):  # right, wait, nothing ready, nobody
            obs, *_ = env.step(action)
            cells[replies].append(_words(env, obs))
        assert ("thanks" in env.vocab) == replies and ("no" in env.vocab) == replies
    assert cells[True] == [{"agent", "thanks"}, {"agent"}, {"agent", "no"}, {"agent"}, {"agent"}]
    assert cells[False] == [{"agent"}] * 5


def test_a_reply_follows_a_failed_instruction_and_free_speech():
    env = InstructionEnv(delay=2, wrong_penalty=0.0, replies=True, **QUIET)
    env.reset(options={"layout": _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    _go_to_slot_0(env)
    obs, reward, *_ = env.step(_say("cook"))  # a wrong sender: the instruction fails, free of charge
    assert reward == 0 and env.failed[0] and _words(env, obs) == {"agent", "no"}
    obs, reward, *_ = env.step(_say("guard"))  # nothing is ready any more
    assert reward == 0 and _words(env, obs) == {"agent", "no"}


def test_the_episode_ends_once_every_instruction_is_resolved_right_or_wrong():
    env = InstructionEnv(n_instructions=3, delay=1, **QUIET)
    env.reset(options={"layout": _layout(env, [1, 2, 3], [0, 1, 3], [2, 2, 2])})  # butler, guard, merchant
    _go_to_slot_0(env)
    _, reward, *_ = env.step(EAST)  # step count 4: all three received and back; (3, 1) touches no niche
    assert reward == 0 and env.adjacent_character() is None
    env.step(EAST)  # in front of the guard: carried out second of three, in any order
    _, reward, terminated, _, info = env.step(_say("cook"))
    assert reward == 1 and not terminated and info["instructions_right"] == 1
    env.step(WEST)
    env.step(WEST)  # in front of the butler
    _, reward, terminated, _, _ = env.step(_say("cook"))
    assert reward == 1 and not terminated and env.right == [True, True, False]
    for action in (SOUTH, SOUTH, SOUTH, SOUTH, EAST, EAST):  # to (4, 5), in front of slot 3, the merchant
        env.step(action)
    assert env.adjacent_character() == 3
    _, reward, terminated, truncated, info = env.step(_say("guard"))  # the wrong sender resolves the last one
    assert reward == pytest.approx(-0.1) and terminated and not truncated
    assert info == {
        "instructions_received": 3,
        "instructions_right": 2,
        "instructions_failed": 1,
        "instructions_wrong": 1,
        "instructions_repeated": 0,
    }


def test_the_walk_bonus_pays_each_step_towards_a_ready_target_through_the_doorway():
    bonus = 0.05
    env = InstructionEnv(n_rooms=2, n_characters=4, n_instructions=1, delay=3, walk_bonus=bonus, max_steps=40, **QUIET)
    # the butler stands in slot 4, room 1's north-west niche (8, 0); its front cell (8, 1) is 10 moves
    # from (2, 1) in room 0: east to (5, 1), south to the doorway row, through (6, 3), east, north
    env.reset(options={"layout": _layout(env, [0], [0], [1], homes=[4, 0, 1, 2], start=(2, 1))})
    assert front_cell(4) == (8, 1)
    walk = [EAST] * 3 + [SOUTH] * 2 + [EAST] * 3 + [NORTH] * 2
    steps = [
        (WEST, 0.0),  # acting on step count 0: nothing ready before or after the move
        (NORTH, 0.0),  # into the wall
        (EAST, -10 * bonus),  # the butler is back at step count 3: 10 moves away
        (NORTH, 0.0),  # into the wall: no nearer
        (WEST, -bonus),  # away from it
        (EAST, bonus),
        *((move, bonus) for move in walk),
    ]
    for action, expected in steps:
        _, reward, terminated, _, _ = env.step(action)
        assert reward == pytest.approx(expected, abs=1e-12) and not terminated
    assert env.agent_pos == (8, 1)
    _, reward, terminated, _, info = env.step(_say("guard"))  # resolved: nothing is ready, the walk left is 0
    assert reward == 1 and terminated and info["instructions_right"] == 1


def test_the_walk_bonus_never_depends_on_the_sender():
    """The bonus says when and where to walk but never whom to name: with the same moves, episodes
    that differ only in their senders earn the same rewards."""
    kwargs = {"n_rooms": 2, "n_characters": 5, "n_instructions": 3, "delay": 6, "walk_bonus": 0.1, "max_steps": 80}
    env = InstructionEnv(**kwargs, **QUIET)
    moves = np.random.default_rng(0).integers(4, size=79)
    rewards = []
    for senders in ([1, 2, 3], [4, 0, 0]):
        env.reset(options={"layout": _layout(env, [3, 20, 40], [0, 1, 2], senders)})
        rewards.append([env.step(int(move))[1] for move in moves])
    assert rewards[0] == rewards[1] and any(reward != 0 for reward in rewards[0])


def test_the_layout_carries_the_episodes_delay_penalty_and_chatter():
    env = InstructionEnv(delay=300, **QUIET)
    layout = _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1], delay=3, wrong_penalty=0.25)
    obs, _ = env.reset(options={"layout": {**layout, "chatter_prob": np.array(1.0)}})
    assert len(_words(env, obs)) == 6  # agent, the instruction's three words, a speaker and a topic
    _go_to_slot_0(env)  # step count 3 = 0 + the layout's delay: back already
    _, reward, *_ = env.step(_say("cook"))
    assert reward == -0.25 and env.failed[0]


def test_the_time_limit_truncates():
    env = InstructionEnv(max_steps=50, delay=10)
    env.reset(seed=3)
    for step in range(1, 51):
        _, reward, terminated, truncated, _ = env.step((EAST, WEST)[step % 2])
        assert reward == 0 and not terminated and truncated == (step == 50)


def test_cats_walk_the_room_border_and_the_agent_walks_over_them():
    env = InstructionEnv(n_wanderers=2, chatter_prob=0.0)
    env.reset(
        options={
            "layout": _layout(
                env, [100, 200, 300, 400], [0, 1, 2, 3], [1, 2, 3, 4], wanderer_rooms=[0, 2], wanderer_phases=[0, 5]
            )
        }
    )
    border_0, border_2 = border_cells(0), border_cells(2)
    walked_over = 0
    assert border_0[:6] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (5, 2)] and len(set(border_0)) == 16
    for t in range(40):
        cats = {(x, y) for x in range(env.width) for y in range(env.height) if isinstance(env.grid.get(x, y), Wanderer)}
        assert cats == {border_0[t % 16], border_2[(5 + t) % 16]}
        obs, *_ = env.step(NORTH if t < 2 else EAST if t < 4 else WEST)
        if env.agent_pos == border_0[(t + 1) % 16]:
            assert _words(env, obs) == {"agent", "cat"}
            walked_over += 1
    assert walked_over > 0 and env.agent_pos == (1, 1)  # walked north twice then east along a row the cat crossed


def test_chatter_follows_the_fixed_table_and_never_uses_role_words():
    env = InstructionEnv(chatter_prob=1.0, n_wanderers=0)
    env.reset(options={"layout": _layout(env, [100, 200, 300, 400], [0, 1, 2, 3], [1, 2, 3, 4], chatter_offset=1020)})
    for t in range(1, 30):
        obs, *_ = env.step(EAST if t % 2 else WEST)
        entry = (1020 + t) % 1024
        speaker, topic = CHARACTERS[env.chatter_speaker[entry]], TOPICS[env.chatter_topic[entry]]
        assert _words(env, obs) == {"agent", speaker, topic}
    half = InstructionEnv(chatter_prob=0.5, n_wanderers=0)
    half.reset(options={"layout": _layout(half, [900, 910, 920, 930], [0, 1, 2, 3], [1, 2, 3, 4])})
    spoke = []
    for t in range(1, 800):
        obs, *_ = half.step(EAST if t % 2 else WEST)
        spoke.append(_words(half, obs) != {"agent"})
        assert spoke[-1] == (half.chatter_draw[t % 1024] < 0.5)
    assert 0.4 < np.mean(spoke) < 0.6
    silent = InstructionEnv(chatter_prob=0.0, n_wanderers=0)
    silent.reset(options={"layout": _layout(silent, [900, 910, 920, 930], [0, 1, 2, 3], [1, 2, 3, 4])})
    assert all(_words(silent, silent.step(EAST)[0]) == {"agent"} for _ in range(99))


def test_distractors_never_change_rewards_or_counters():
    """The same schedule and actions, with and without cats and chatter, earn the same rewards."""
    small = {"n_rooms": 1, "n_characters": 3, "n_instructions": 3, "delay": 4, "max_steps": 200}
    noisy = InstructionEnv(**small, n_wanderers=6, chatter_prob=1.0)
    quiet = InstructionEnv(**small, **QUIET)
    rng = np.random.default_rng(0)
    rewards = {"right": 0, "wrong": 0}
    for _ in range(4):
        layout = noisy.sample_layout(rng)
        noisy.reset(options={"layout": layout})
        quiet.reset(
            options={
                "layout": {
                    **layout,
                    "wanderer_rooms": np.zeros(0, dtype=np.int64),
                    "wanderer_phases": np.zeros(0, dtype=np.int64),
                    "chatter_prob": np.array(0.0),
                }
            }
        )
        for _ in range(200):
            listener, u = quiet.adjacent_character(), rng.random()
            ready = quiet.ready(quiet.step_count)
            senders = [
                sender for (_, target, sender), r in zip(quiet.schedule, ready, strict=True) if r and target == listener
            ]
            if senders and u < 0.5:  # often right, so that rewards of every kind happen
                action = 4 + senders[0]
            elif u < (0.7 if listener is not None else 0.1):
                action = int(rng.integers(4, 7))
            else:
                action = int(rng.choice(4, p=[0.35, 0.15, 0.35, 0.15]))
            step_noisy, step_quiet = noisy.step(action), quiet.step(action)
            assert step_noisy[1:] == step_quiet[1:] and noisy.agent_pos == quiet.agent_pos
            rewards["right"] += step_noisy[1] == 1
            rewards["wrong"] += step_noisy[1] < 0
            if step_noisy[2] or step_noisy[3]:
                break
    assert rewards["right"] > 5 and rewards["wrong"] > 30


def test_ansi_shows_characters_by_initial_and_cats():
    env = InstructionEnv(n_rooms=2, n_characters=4, n_wanderers=1, render_mode="ansi")
    env.reset(
        options={
            "layout": _layout(
                env,
                [100, 200, 300, 400],
                [0, 1, 2, 3],
                [1, 2, 3, 0],
                homes=[0, 3, 4, 7],
                wanderer_rooms=[1],
                wanderer_phases=[0],
            )
        }
    )
    assert env.render().splitlines() == [
        "##B#####C####",
        "#     #c    #",
        "#     #     #",
        "#  A        #",
        "#     #     #",
        "#     #     #",
        "####G#####M##",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rooms": 0}, r"n_rooms must be an integer in \[1, inf\), got 0"),
        ({"n_characters": 1}, r"n_characters must be an integer in \[2, 8\], got 1"),
        ({"n_characters": 9}, r"n_characters must be an integer in \[2, 8\], got 9"),
        ({"n_rooms": 1, "n_characters": 5}, r"n_characters must be an integer in \[2, 4\], got 5"),
        ({"n_instructions": 0}, r"n_instructions must be an integer in \[1, 8\], got 0"),
        ({"n_characters": 3, "n_instructions": 4}, r"n_instructions must be an integer in \[1, 3\], got 4"),
        ({"random_homes": 1}, r"random_homes must be True or False, got 1"),
        ({"announce_returns": "yes"}, r"announce_returns must be True or False, got 'yes'"),
        ({"replies": 1}, r"replies must be True or False, got 1"),
        ({"random_start": None}, r"random_start must be True or False, got None"),
        ({"delay": 0}, r"delay must be an integer in \[1, 995\], got 0"),
        ({"delay": 996}, r"delay must be an integer in \[1, 995\], got 996"),
        ({"max_steps": 5}, r"max_steps must be an integer in \[6, inf\), got 5"),
        ({"wrong_penalty": -0.1}, r"wrong_penalty must be a number in \[0.0, inf\), got -0.1"),
        ({"n_wanderers": -1}, r"n_wanderers must be an integer in \[0, inf\), got -1"),
        ({"chatter_prob": 1.5}, r"chatter_prob must be a number in \[0.0, 1.0\], got 1.5"),
        ({"walk_bonus": -0.05}, r"walk_bonus must be a number in \[0.0, inf\), got -0.05"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("Instruction-v0", **kwargs)


def test_bad_actions_and_layouts_raise():
    env = InstructionEnv(**QUIET)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 11\], got 12"):
        env.step(12)
    with pytest.raises(ValueError, match=r"layout\['homes'\]"):
        env.reset(options={"layout": _layout(env, [1, 2, 3, 4], [0, 1, 2, 3], [1, 2, 3, 4], homes=[16] * 8)})
    with pytest.raises(ValueError, match=r"layout\['targets'\] = .* must hold distinct values"):
        env.reset(options={"layout": _layout(env, [1, 2, 3, 4], [0, 1, 0, 3], [1, 2, 3, 4])})
    with pytest.raises(ValueError, match=r"layout\['times'\] = .* must hold distinct values"):
        env.reset(options={"layout": _layout(env, [1, 2, 2, 4], [0, 1, 2, 3], [1, 2, 3, 4])})
    with pytest.raises(ValueError, match=r"no instruction may come from its own target"):
        env.reset(options={"layout": _layout(env, [1, 2, 3, 4], [0, 1, 2, 3], [1, 1, 3, 4])})
    with pytest.raises(ValueError, match=r"layout\['delay'\]"):
        env.reset(options={"layout": _layout(env, [1, 2, 3, 4], [0, 1, 2, 3], [1, 2, 3, 4], delay=996)})


def test_the_picture_tells_characters_cats_and_empty_niches_apart():
    env = InstructionEnv(n_rooms=2, n_characters=8, n_wanderers=1, chatter_prob=0.0, render_mode="rgb_array")
    layout = _layout(env, [0, 200, 300, 400], [1, 2, 3, 4], [0, 0, 0, 0], wanderer_rooms=[1], wanderer_phases=[8])
    obs, _ = env.reset(options={"layout": layout})  # the guard (slot 1) leaves at step 0
    image, tile = env.render(), env.tile_size

    def cell(x, y):
        return image[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]

    butler, wizard = cell(*niche_cell(0)), cell(*niche_cell(5))
    assert env.characters[0].color == env.characters[5].color and not np.array_equal(butler, wizard)  # initials
    cat = cell(*border_cells(1)[8])
    assert all(not np.array_equal(cat, cell(*niche_cell(slot))) for slot in range(8))
    away_guard, plain_wall = cell(*niche_cell(1)), cell(0, 0)
    assert not np.array_equal(away_guard, plain_wall)  # drawn as the guard's empty niche ...
    env.step(EAST)
    env.step(NORTH)
    obs, *_ = env.step(NORTH)  # (4, 1), in front of the guard's niche
    assert _words(env, obs, 0, 1) == {"wall", "grey"}  # ... but it reads as a plain wall


def test_free_speech_is_no_mistake_but_a_wrong_sender_still_fails():
    env = InstructionEnv(delay=2, wrong_penalty=0.0, **QUIET)
    env.reset(options={"layout": _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    _go_to_slot_0(env)
    env.step(EAST)
    env.step(EAST)  # (4, 1): in front of the guard, who has nothing ready
    assert env.adjacent_character() == 1
    _, reward, _, _, info = env.step(_say("butler"))
    assert reward == 0 and info["instructions_wrong"] == 0
    env.step(WEST)
    env.step(WEST)  # in front of the butler, whose instruction is ready
    assert env.adjacent_character() == 0 and env.ready(env.step_count)[0]
    _, reward, _, _, info = env.step(_say("cook"))
    assert reward == 0 and info["instructions_failed"] == 1 and info["instructions_wrong"] == 0 and env.failed[0]
