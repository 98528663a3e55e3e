"""Every rule of multi-room Portal (envs/portal.py), on the reference env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.portal import PortalEnv, room_origin

NORTH, EAST, SOUTH, WEST = range(4)


def _words(env, obs, row, col):
    return {env.vocab[k] for k in np.flatnonzero(obs[row, col])}


def _local(env):
    """(room, x, y) of the agent, x and y its floor cell 0..4 in the room."""
    x0, y0 = room_origin(env.room)
    return env.room, env.agent_pos[0] - x0 - 1, env.agent_pos[1] - y0 - 1


def _take_door(env, door):
    """From the room's entry cell, walk to the door (north or south) and through it."""
    assert _local(env)[1:] == (2, 2)
    for _ in range(2):
        env.step(door)
    return env.step(door)


@pytest.mark.parametrize("render_mode", ["rgb_array", "ansi"])
def test_passes_the_gymnasium_env_checker(render_mode):
    check_env(gym.make("Portal-v0", render_mode=render_mode).unwrapped, skip_render_check=False)


def test_defaults_follow_the_paper():
    env = PortalEnv()
    env.reset(seed=0)
    assert (env.n_rooms, env.max_steps) == (50, 1000)
    x0, y0 = room_origin(7)
    interior = [[env.grid.get(x, y) for x in range(x0 + 1, x0 + 6)] for y in range(y0 + 1, y0 + 6)]
    assert all(cell is None for row in interior for cell in row)  # a 5x5 floor
    doors = [env.grid.get(x0 + 3, y0), env.grid.get(x0 + 3, y0 + 6)]
    assert [(d.type, d.color) for d in doors] == [("door", "red"), ("door", "blue")]
    assert len(env.vocab) == 13 + 50 and env.vocab[-1] == "room_50"


def test_reset_is_deterministic_under_a_seed_and_draws_each_door_uniformly():
    a, b = PortalEnv(), PortalEnv()
    draws = []
    for seed in range(200):
        obs_a, _ = a.reset(seed=seed)
        obs_b, _ = b.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(a.layout["correct"], b.layout["correct"])
        draws.append(a.layout["correct"])
    assert abs(np.mean(draws) - 0.5) < 0.02  # 9800 fair bits: standard error 0.005
    assert len({tuple(d) for d in draws}) == 200


def test_starts_in_room_one_whose_word_is_on_the_agent_cell_and_walls_block():
    env = PortalEnv()
    obs, _ = env.reset(seed=0)
    assert _local(env) == (0, 2, 2)
    assert _words(env, obs, 1, 1) == {"agent", "room_1"}
    for _ in range(2):
        env.step(EAST)
    obs, reward, terminated, truncated, _ = env.step(EAST)  # the east wall
    assert _local(env) == (0, 4, 2) and reward == 0 and not (terminated or truncated)
    assert _words(env, obs, 1, 2) == {"wall", "grey"}
    env.step(NORTH)
    env.step(NORTH)
    obs, *_ = env.step(NORTH)  # the north wall, next to the door
    assert _local(env) == (0, 4, 0)
    env.step(WEST)
    obs, *_ = env.step(WEST)
    assert _local(env) == (0, 2, 0)
    assert _words(env, obs, 0, 1) == {"door", "red"} and _words(env, obs, 0, 0) == {"wall", "grey"}


def test_correct_doors_teleport_onwards_with_reward_and_the_last_room_ends():
    env = PortalEnv(n_rooms=4)
    correct = np.array([1, 0, 1])
    env.reset(options={"layout": {"correct": correct, "rooms": 4}})
    for k in (1, 2, 3):
        obs, reward, terminated, truncated, _ = _take_door(env, (NORTH, SOUTH)[correct[k - 1]])
        assert reward == pytest.approx(0.1 * k)
        assert _local(env) == (k, 2, 2) and _words(env, obs, 1, 1) == {"agent", f"room_{k + 1}"}
        assert terminated == (k == 3) and not truncated


def test_wrong_doors_send_back_to_room_one_and_two_mistakes_in_a_room_end():
    env = PortalEnv(n_rooms=5)
    env.reset(options={"layout": {"correct": np.array([0, 1, 0, 0]), "rooms": 5}})
    _take_door(env, NORTH)  # right: room 2
    obs, reward, terminated, _, _ = _take_door(env, NORTH)  # wrong in room 2
    assert reward == 0 and not terminated
    assert _local(env) == (0, 2, 2) and _words(env, obs, 1, 1) == {"agent", "room_1"}
    obs, reward, terminated, _, _ = _take_door(env, SOUTH)  # wrong in room 1: one mistake there
    assert reward == 0 and not terminated and _local(env) == (0, 2, 2)
    _, reward, _, _, _ = _take_door(env, NORTH)  # right in room 1 again: rewarded again
    assert reward == pytest.approx(0.1)
    _, reward, _, _, _ = _take_door(env, SOUTH)  # right in room 2
    assert reward == pytest.approx(0.2) and _local(env)[0] == 2
    _, reward, terminated, _, _ = _take_door(env, SOUTH)  # wrong in room 3: its first mistake
    assert not terminated and _local(env)[0] == 0
    _, _, terminated, _, _ = _take_door(env, NORTH)
    assert not terminated and _local(env)[0] == 1
    _, reward, terminated, truncated, _ = _take_door(env, NORTH)  # wrong in room 2 again: the second
    assert reward == 0 and terminated and not truncated


def test_with_fewer_rooms_in_play_reaching_the_last_of_them_is_the_success():
    env = PortalEnv(n_rooms=5, active_rooms=3)
    env.reset(seed=0)
    assert int(env.layout["rooms"]) == 3
    correct = env.layout["correct"]
    _, reward, terminated, _, _ = _take_door(env, (NORTH, SOUTH)[correct[0]])
    assert reward == pytest.approx(0.1) and not terminated
    _, reward, terminated, truncated, _ = _take_door(env, (NORTH, SOUTH)[correct[1]])
    assert reward == pytest.approx(0.2) and terminated and not truncated and _local(env)[0] == 2
    env.reset(options={"layout": {"correct": correct, "rooms": 5}})  # a layout names its own rooms
    for k in range(1, 4):
        _, _, terminated, _, _ = _take_door(env, (NORTH, SOUTH)[correct[k - 1]])
        assert not terminated
    assert _take_door(env, (NORTH, SOUTH)[correct[3]])[2]


def test_episode_is_truncated_after_1000_steps():
    env = PortalEnv()
    env.reset(seed=0)
    for step in range(1, 1001):
        _, reward, terminated, truncated, _ = env.step((EAST, WEST)[step % 2])
        assert reward == 0 and not terminated and truncated == (step == 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rooms": 0}, r"n_rooms must be an integer in \[2, inf\), got 0"),
        ({"n_rooms": 1}, r"n_rooms must be an integer in \[2, inf\), got 1"),
        ({"max_steps": 0}, r"max_steps must be an integer in \[1, inf\), got 0"),
        ({"n_rooms": 4, "active_rooms": 1}, r"active_rooms must be an integer in \[2, 4\], got 1"),
        ({"n_rooms": 4, "active_rooms": 5}, r"active_rooms must be an integer in \[2, 4\], got 5"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("Portal-v0", **kwargs)


def test_actions_outside_the_space_raise():
    env = PortalEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\], got -1"):
        env.step(-1)
