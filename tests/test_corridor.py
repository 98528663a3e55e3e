"""Every rule of Corridor (envs/corridor.py), on the reference env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.corridor import CorridorEnv

NORTH, EAST, SOUTH, WEST = range(4)


def _words(env, obs, row, col):
    return {env.vocab[k] for k in np.flatnonzero(obs[row, col])}


@pytest.mark.parametrize("render_mode", ["rgb_array", "ansi"])
def test_passes_the_gymnasium_env_checker(render_mode):
    check_env(gym.make("Corridor-v0", render_mode=render_mode).unwrapped, skip_render_check=False)


def test_defaults_follow_the_paper():
    env = CorridorEnv()
    assert (env.min_length, env.max_length, env.max_steps) == (3, 200, 1000)


def test_reset_is_deterministic_under_a_seed():
    a, b = CorridorEnv(), CorridorEnv()
    for seed in range(20):
        obs_a, _ = a.reset(seed=seed)
        obs_b, _ = b.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert a.layout == b.layout
    layouts = set()
    for seed in range(20):
        a.reset(seed=seed)
        layouts.add(tuple(int(v) for v in a.layout.values()))
    assert len(layouts) > 10


def test_layout_draws_cover_lengths_cues_and_door_orders_uniformly():
    env = CorridorEnv()
    draws = np.array([[int(v) for v in env.sample_layout(np.random.default_rng(s)).values()] for s in range(4000)])
    lengths, cues, north = draws.T
    assert lengths.min() == 3 and lengths.max() == 200
    assert abs(lengths.mean() - 101.5) < 3  # U(3, 200): standard error 0.9
    assert abs(cues.mean() - 0.5) < 0.04 and abs(north.mean() - 0.5) < 0.04  # standard error 0.008
    assert abs((cues == north).mean() - 0.5) < 0.04


@pytest.mark.parametrize("cue", [0, 1])
def test_start_shows_the_cue_north_and_walls_block(cue):
    env = CorridorEnv(min_length=6, max_length=6)
    obs, _ = env.reset(options={"layout": {"length": 6, "cue": cue, "north_door": 0}})
    colour = ("red", "blue")[cue]
    assert env.agent_pos == (1, 2)
    assert _words(env, obs, 0, 1) == {"ball", colour}
    assert _words(env, obs, 1, 1) == {"agent"}
    assert _words(env, obs, 1, 0) == _words(env, obs, 2, 1) == {"wall", "grey"}
    assert _words(env, obs, 1, 2) == set()
    for action in (NORTH, WEST, SOUTH):  # the cue, the west wall, the south wall
        obs, reward, terminated, truncated, _ = env.step(action)
        assert env.agent_pos == (1, 2) and reward == 0 and not terminated and not truncated


@pytest.mark.parametrize("length", [3, 4, 9])
@pytest.mark.parametrize("cue", [0, 1])
@pytest.mark.parametrize("north_door", [0, 1])
@pytest.mark.parametrize("door", [NORTH, SOUTH])
def test_doors_end_the_episode_rewarding_the_cue_colour(length, cue, north_door, door):
    env = CorridorEnv(min_length=3, max_length=9)
    env.reset(options={"layout": {"length": length, "cue": cue, "north_door": north_door}})
    for _ in range(length + 3):  # east until the junction; the east wall then blocks
        obs, reward, terminated, truncated, _ = env.step(EAST)
        assert reward == 0 and not terminated
    assert env.agent_pos == (length, 2)
    colours = ("red", "blue")
    north_colour, south_colour = colours[north_door], colours[1 - north_door]
    assert _words(env, obs, 0, 1) == {"door", north_colour} and _words(env, obs, 2, 1) == {
        "door",
        south_colour,
    }
    assert not any("ball" in _words(env, obs, r, c) for r in range(3) for c in range(3))  # the cue is out of sight
    entered = north_colour if door == NORTH else south_colour
    obs, reward, terminated, truncated, _ = env.step(door)
    assert terminated and not truncated
    assert reward == (1.0 if entered == colours[cue] else 0.0)


def test_time_limit_truncates():
    env = CorridorEnv(min_length=10, max_length=10, max_steps=10)
    env.reset(seed=0)
    for step in range(1, 11):
        obs, reward, terminated, truncated, _ = env.step(WEST)
        assert not terminated and truncated == (step == 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_length": 2}, r"min_length must be an integer in \[3, inf\), got 2"),
        ({"max_length": 1}, r"max_length must be an integer in \[3, inf\), got 1"),
        ({"min_length": 50, "max_length": 40}, r"min_length must be at most max_length \(40\), got 50"),
        ({"max_steps": 199}, r"max_steps must be an integer in \[200, inf\), got 199"),
        ({"min_length": 3.5}, "min_length must be an integer"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("Corridor-v0", **kwargs)


def test_actions_outside_the_space_raise():
    env = CorridorEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\], got 4"):
        env.step(4)


def _play(policy_remembers: bool, episodes: int) -> float:
    """Walk east to the junction; take the door of the remembered cue colour, or always the north one."""
    env = CorridorEnv()
    red, blue, ball = (env.word_index[w] for w in ("red", "blue", "ball"))
    wins = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        cue = "red" if obs[0, 1, red] else "blue"
        assert obs[0, 1, ball] and obs[0, 1, red] != obs[0, 1, blue]
        terminated = truncated = False
        while not (terminated or truncated):
            at_junction = obs[0, 1, env.word_index["door"]] == 1
            if not at_junction:
                action = EAST
            elif policy_remembers:
                action = NORTH if obs[0, 1, env.word_index[cue]] else SOUTH
            else:
                action = NORTH
            obs, reward, terminated, truncated, _ = env.step(action)
        wins += reward == 1.0
    return wins / episodes


def test_an_agent_that_remembers_the_cue_always_wins():
    assert _play(policy_remembers=True, episodes=200) == 1.0


def test_an_agent_that_never_looks_back_wins_about_half():
    rate = _play(policy_remembers=False, episodes=400)
    assert 0.4 < rate < 0.6  # binomial(400, 0.5): standard error 0.025
