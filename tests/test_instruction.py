"""Every rule of the Instruction task (envs/instruction.py), on the reference env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.instruction import CHARACTERS, TOPICS, InstructionEnv, border_cells, niche_cell

NORTH, EAST, SOUTH, WEST = range(4)
QUIET = {"n_wanderers": 0, "chatter_prob": 0.0}  # no distractors, so the words under test stand alone


def _words(env, obs, row=1, col=1):
    return {env.vocab[k] for k in np.flatnonzero(obs[row, col])}


def _say(sender):
    """The speech action "say_<sender>"."""
    return 4 + CHARACTERS.index(sender)


def _layout(env, times, targets, senders, homes=None, wanderer_rooms=(), wanderer_phases=(), chatter_offset=0):
    """A layout for `env`: by default character c stands in niche slot c (room c // 4)."""
    return {
        "homes": np.arange(env.n_characters) if homes is None else np.array(homes),
        "times": np.array(times),
        "targets": np.array(targets),
        "senders": np.array(senders),
        "wanderer_rooms": np.array(wanderer_rooms, dtype=np.int64),
        "wanderer_phases": np.array(wanderer_phases, dtype=np.int64),
        "chatter_offset": np.array(chatter_offset),
    }


def _go_to_slot_0(env):
    """From the start (3, 3), walk to (2, 1), the floor cell in front of niche slot 0 (2, 0)."""
    for action in (NORTH, NORTH, WEST):
        obs, reward, *_ = env.step(action)
        assert reward == 0
    assert env.agent_pos == (2, 1) and niche_cell(0) == (2, 0)
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
    assert env.action_space.n == 4 + 8 and obs.shape == (3, 3, len(env.vocab)) and obs.dtype == np.int8
    roles = {"tell", *(f"to_{name}" for name in CHARACTERS), *(f"from_{name}" for name in CHARACTERS)}
    assert roles | set(CHARACTERS) | set(TOPICS) | {"cat", "agent", "wall", "door"} <= set(env.vocab)
    assert info == {"instructions_received": 0, "instructions_right": 0, "instructions_wrong": 0}
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
        assert len(set(layout["homes"])) == 8
        assert np.all(layout["targets"] != layout["senders"])
        assert np.all(layout["times"] // spacing == np.arange(4))  # instruction k in [k S, (k + 1) S)
        seen.add(tuple(layout["homes"]))
    assert len(seen) == 100


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


def test_the_target_is_away_for_delay_steps_then_the_right_speech_is_rewarded_once():
    env = InstructionEnv(delay=20, **QUIET)
    env.reset(options={"layout": _layout(env, [5, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    obs = _go_to_slot_0(env)  # step count 3: the butler stands in slot 0, north of the agent
    assert _words(env, obs, 0, 1) == {"butler"}
    obs = _wait(env, 2)  # step count 5: the instruction, and the butler has left
    assert {"tell", "to_butler", "from_guard"} <= _words(env, obs) and _words(env, obs, 0, 1) == {"wall", "grey"}
    for t in range(5, 25):  # away while 5 <= t < 25: speaking to the wall is wrong
        obs, reward, _, _, info = env.step(_say("guard"))
        assert reward == pytest.approx(-0.1) and info["instructions_wrong"] == t - 4
        assert _words(env, obs, 0, 1) == ({"butler"} if t + 1 == 25 else {"wall", "grey"})
    _, reward, terminated, _, info = env.step(_say("guard"))  # acting on step count 25 = 5 + delay
    assert reward == 1 and not terminated and info["instructions_right"] == 1
    _, reward, _, _, info = env.step(_say("guard"))  # executed: no longer pending
    assert reward == pytest.approx(-0.1) and info["instructions_right"] == 1 and info["instructions_wrong"] == 21


def test_wrong_sender_wrong_target_and_nobody_are_penalised_and_the_instruction_stays_pending():
    env = InstructionEnv(delay=2, wrong_penalty=0.5, **QUIET)
    env.reset(options={"layout": _layout(env, [0, 100, 110, 120], [0, 2, 3, 4], [1, 1, 1, 1])})
    _, reward, *_ = env.step(_say("guard"))  # at the start, nobody is next to the agent
    assert reward == -0.5
    _go_to_slot_0(env)  # in front of the butler (slot 0)
    for sender in ("cook", "merchant", "butler"):  # wrong senders
        _, reward, *_ = env.step(_say(sender))
        assert reward == -0.5
    env.step(EAST)
    env.step(EAST)  # (4, 1): in front of the guard (slot 1), who is not the target
    assert env.adjacent_character() == 1
    _, reward, *_ = env.step(_say("guard"))
    assert reward == -0.5
    env.step(WEST)
    env.step(WEST)
    _, reward, _, _, info = env.step(_say("guard"))  # still pending: now right
    assert reward == 1 and info == {"instructions_received": 1, "instructions_right": 1, "instructions_wrong": 5}


def test_several_pending_instructions_are_executed_in_any_order_and_the_last_one_ends_the_episode():
    env = InstructionEnv(n_instructions=3, delay=1, **QUIET)
    env.reset(options={"layout": _layout(env, [1, 2, 3], [0, 1, 0], [2, 2, 2])})  # butler twice, guard once
    _go_to_slot_0(env)
    _, reward, *_ = env.step(EAST)  # step count 4: all three received and back; (3, 1) touches no niche
    assert reward == 0 and env.adjacent_character() is None
    env.step(EAST)  # in front of the guard
    _, reward, terminated, _, info = env.step(_say("cook"))
    assert reward == 1 and not terminated and info["instructions_right"] == 1
    env.step(WEST)
    env.step(WEST)  # in front of the butler: two instructions pending for the same pair
    _, reward, terminated, _, _ = env.step(_say("cook"))
    assert reward == 1 and not terminated and env.executed == [True, True, False]  # the earliest first
    _, reward, terminated, truncated, info = env.step(_say("cook"))
    assert reward == 1 and terminated and not truncated
    assert info == {"instructions_received": 3, "instructions_right": 3, "instructions_wrong": 0}


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
        cats = {
            (x, y)
            for x in range(env.width)
            for y in range(env.height)
            if env.grid.get(x, y) is not None and env.grid.get(x, y).type == "key"
        }
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
    silent = InstructionEnv(chatter_prob=0.0)
    assert np.all(silent.chatter_speaker == -1)
    half = InstructionEnv().chatter_speaker
    assert 0.4 < np.mean(half >= 0) < 0.6


def test_distractors_never_change_rewards_or_counters():
    """The same schedule and actions, with and without cats and chatter, earn the same rewards."""
    noisy = InstructionEnv(n_rooms=1, n_characters=3, delay=4, max_steps=200, n_wanderers=6, chatter_prob=1.0)
    quiet = InstructionEnv(n_rooms=1, n_characters=3, delay=4, max_steps=200, **QUIET)
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
                }
            }
        )
        for _ in range(200):
            speak = quiet.adjacent_character() is not None and rng.random() < 0.7
            action = int(rng.integers(4, 7)) if speak else int(rng.choice(4, p=[0.35, 0.15, 0.35, 0.15]))
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
        ({"n_instructions": 0}, r"n_instructions must be an integer in \[1, inf\), got 0"),
        ({"delay": 0}, r"delay must be an integer in \[1, 995\], got 0"),
        ({"delay": 996}, r"delay must be an integer in \[1, 995\], got 996"),
        ({"max_steps": 5}, r"max_steps must be an integer in \[6, inf\), got 5"),
        ({"wrong_penalty": -0.1}, r"wrong_penalty must be a number in \[0.0, inf\), got -0.1"),
        ({"n_wanderers": -1}, r"n_wanderers must be an integer in \[0, inf\), got -1"),
        ({"chatter_prob": 1.5}, r"chatter_prob must be a number in \[0.0, 1.0\], got 1.5"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("Instruction-v0", **kwargs)


def test_bad_actions_and_layouts_raise():
    env = InstructionEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 11\], got 12"):
        env.step(12)
    with pytest.raises(ValueError, match=r"layout\['homes'\]"):
        env.reset(options={"layout": _layout(env, [1, 2, 3, 4], [0, 1, 2, 3], [1, 2, 3, 4], homes=[16] * 8)})
