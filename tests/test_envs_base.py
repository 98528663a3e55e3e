"""The shared pieces of the gridworlds: vocabulary, checks, word observations, rendering, the twin base."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Door, Key, Wall

import envs  # noqa: F401  (registers the tasks)
from envs.base import WordGridEnv
from envs.checks import check_action, check_int, check_not_above
from envs.corridor import CorridorEnv
from envs.corridor_batched import BatchedCorridorEnv
from envs.portal_batched import BatchedPortalEnv
from envs.vocab import BASE_WORDS, build_vocab


def test_vocab_has_the_base_words_then_the_task_words():
    vocab = build_vocab(["room_1", "room_2"])
    assert vocab[: len(BASE_WORDS)] == BASE_WORDS
    assert {"agent", "wall", "door", "red", "blue", "grey", "ball"} <= set(vocab)
    assert vocab[-2:] == ("room_1", "room_2")
    with pytest.raises(ValueError, match="repeat words already in the vocabulary: red"):
        build_vocab(["red"])


def test_checks_name_the_parameter_and_the_allowed_range():
    assert check_int("n", 5, 3, 9) == 5
    with pytest.raises(ValueError, match=r"n_rooms must be an integer in \[2, inf\), got 0"):
        check_int("n_rooms", 0, 2)
    with pytest.raises(ValueError, match=r"n must be an integer in \[3, 9\], got 10"):
        check_int("n", 10, 3, 9)
    with pytest.raises(ValueError, match="must be an integer"):
        check_int("n", 3.0, 1)
    with pytest.raises(ValueError, match=r"min_length must be at most max_length \(4\), got 5"):
        check_not_above("min_length", 5, "max_length", 4)
    assert check_action(np.int64(3), 4) == 3
    for bad in (4, -1, 1.0, [1], "1"):
        with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\]"):
            check_action(bad, 4)


class _Character(Ball):
    """An object that describes itself with its own words, as `envs.base` allows."""

    words = ("key", "purple")


KINDS = [None, Wall(), Ball("red"), Door("blue"), Key("green"), _Character("yellow")]
KIND_WORDS = [(), ("wall", "grey"), ("ball", "red"), ("door", "blue"), ("key", "green"), ("key", "purple")]


def _random_world(env: WordGridEnv, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    codes = rng.integers(len(KINDS), size=(height, width))
    env.grid = Grid(width, height)
    for y in range(height):
        for x in range(width):
            env.grid.set(x, y, KINDS[codes[y, x]])
    return codes


def test_twin_cell_encoding_matches_the_reference_words_on_random_grids():
    """`window_codes` + `encode_cells` (code grid with a wall border) against `WordGridEnv.gen_obs`,
    with the agent anywhere, border cells included (so cells beyond the grid must read as wall)."""
    rng = np.random.default_rng(0)
    reference = CorridorEnv()
    reference.reset(seed=0)
    twin = BatchedCorridorEnv(num_envs=16)
    table = twin.word_table(KIND_WORDS)
    for _ in range(5):
        codes = _random_world(reference, rng, height=6, width=7)
        xs, ys = rng.integers(7, size=16), rng.integers(6, size=16)
        expected = []
        for x, y in zip(xs, ys, strict=True):
            reference.agent_pos = (int(x), int(y))
            expected.append(reference.gen_obs())
        bordered = torch.as_tensor(np.pad(codes, 1, constant_values=1))  # shared H x W code grid
        shared = twin.encode_cells(table, twin.window_codes(bordered, torch.as_tensor(xs + 1), torch.as_tensor(ys + 1)))
        per_env = twin.encode_cells(
            table,
            twin.window_codes(bordered.expand(16, -1, -1), torch.as_tensor(xs + 1), torch.as_tensor(ys + 1)),
        )
        np.testing.assert_array_equal(shared.numpy(), np.stack(expected))
        np.testing.assert_array_equal(per_env.numpy(), np.stack(expected))


def test_observation_words_the_agent_and_beyond_the_grid():
    env = CorridorEnv()
    env.reset(seed=0)
    env.grid = Grid(3, 3)
    env.grid.set(1, 0, Door("red"))
    env.agent_pos = (0, 1)
    obs = env.gen_obs()
    word = env.unwrapped.word_index
    assert obs.dtype == np.int8 and obs.shape == (3, 3, len(env.vocab))
    assert obs[:, 0, word["wall"]].tolist() == [1, 1, 1]  # the west column lies beyond the grid
    assert obs[0, 2, word["door"]] == 1 and obs[0, 2, word["red"]] == 1  # north-east: the door
    assert obs[1, 1].nonzero()[0].tolist() == [word["agent"]]
    assert obs[:, :, word["agent"]].sum() == 1


def test_renders_highlight_the_window_and_draw_text():
    env = gym.make("Corridor-v0", render_mode="rgb_array", min_length=5, max_length=5)
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (5 * 32, 7 * 32, 3) and image.dtype == np.uint8
    plain = env.unwrapped.grid.render(32, env.unwrapped.agent_pos, env.unwrapped.agent_dir)
    changed = np.argwhere((image != plain).any(axis=2))
    assert changed.min(axis=0).tolist() == [32, 0] and changed.max(axis=0).tolist() == [
        4 * 32 - 1,
        3 * 32 - 1,
    ]
    text = gym.make("Corridor-v0", render_mode="ansi", min_length=5, max_length=5)
    text.reset(seed=0)
    assert text.render().splitlines()[2] == "#A    #"
    with pytest.raises(ValueError, match="render_mode must be one of"):
        CorridorEnv(render_mode="human")


def test_layout_option_is_checked():
    env = CorridorEnv(min_length=3, max_length=10)
    obs, _ = env.reset(options={"layout": {"length": 10, "cue": 1, "north_door": 0}})
    assert env.grid.width == 12
    with pytest.raises(ValueError, match=r"layout\['length'\]"):
        env.reset(options={"layout": {"length": 11, "cue": 1, "north_door": 0}})
    with pytest.raises(ValueError, match="layout must have the keys"):
        env.reset(options={"layout": {"length": 5}})


@pytest.mark.parametrize("task", ["Corridor-v0", "Portal-v0"])
def test_make_vec_gives_the_twin_with_the_reference_spaces(task):
    twin = gym.make_vec(task, num_envs=3, vectorization_mode="vector_entry_point", device="cpu")
    reference = gym.make(task).unwrapped
    assert twin.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert twin.single_observation_space == reference.observation_space
    assert twin.single_action_space == reference.action_space == gym.spaces.Discrete(4)
    assert twin.vocab == reference.vocab
    obs, _ = twin.reset(seed=0)
    assert obs.dtype == torch.int8 and obs.shape == (3, 3, 3, len(reference.vocab))
    obs, reward, terminated, truncated, info = twin.step(np.array([1, 1, 1]))
    assert reward.dtype == torch.float32 and terminated.dtype == truncated.dtype == torch.bool
    assert set(info) == {"final_obs", "episode_return", "episode_length", "success"}
    for bad in (
        torch.tensor([0, 4, 1]),
        torch.tensor([-1, 0, 0]),
        torch.tensor([0.0, 1.0, 2.0]),
        torch.tensor([0, 1]),
    ):
        with pytest.raises(ValueError, match=r"actions must be"):
            twin.step(bad)
    with pytest.raises(ValueError, match="num_envs must be an integer"):
        gym.make_vec(task, num_envs=0, vectorization_mode="vector_entry_point")
    with pytest.raises(RuntimeError, match="reset"):
        gym.make_vec(task, num_envs=2, vectorization_mode="vector_entry_point").step(np.array([0, 0]))


def test_twins_bound_their_tables_and_bit_masks():
    with pytest.raises(ValueError, match=r"max_length must be an integer in \[3, 1000\], got 1001"):
        BatchedCorridorEnv(2, max_length=1001, max_steps=2000)
    with pytest.raises(ValueError, match=r"n_rooms must be an integer in \[2, 63\], got 64"):
        BatchedPortalEnv(2, n_rooms=64)
