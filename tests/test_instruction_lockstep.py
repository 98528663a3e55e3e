"""The batched Instruction twin reproduces the reference exactly, step by step, and resumes exactly.

The twin and N reference envs are driven in lockstep on the same episode layouts (each reference is
reset with `twin.layout(i)` whenever env i starts an episode) and the same actions, from a random
policy that peeks at the references' state: next to the target of a ready instruction it usually
says the right sender, half the envs also say random senders (to characters, failing instructions
or finding nothing ready, or to nobody), else it walks, preferring north and south where the niches
are. Observations, rewards, terminated, truncated, the instruction counters, final observations and
episode statistics must be identical at every step; small parameters make right and wrong
executions, failed instructions, completed and truncated episodes happen many times. A curriculum
change (`set_task`) in the middle of a run must keep the twin and the references identical too.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.instruction import DOORWAY_Y, InstructionEnv
from envs.instruction_batched import BatchedInstructionEnv
from tests.test_batched_lockstep import DEVICES

SMALL = {"n_rooms": 1, "n_characters": 3, "n_instructions": 3, "delay": 4, "n_wanderers": 3, "max_steps": 60}
NORTH, EAST, SOUTH, WEST = range(4)
COUNTERS = (
    "instructions_received",
    "instructions_right",
    "instructions_failed",
    "instructions_wrong",
    "instructions_repeated",
)


def policy(references, rng):
    """Actions (N,) from the references' state: next to the target of a ready instruction, usually
    say its sender (careless envs, odd i, less often: they also say random senders, to characters or
    to nobody), else often walk towards such a target (but not envs 0, 4, 8, ...); else walk at
    random, mostly north-south."""
    actions = []
    for i, reference in enumerate(references):
        t, u = reference.step_count, rng.random()
        ready = [
            (target, sender)
            for (_, target, sender), is_ready in zip(reference.schedule, reference.ready(t), strict=True)
            if is_ready
        ]
        senders = [sender for target, sender in ready if target == reference.adjacent_character()]
        present = [target for target, _ in ready]
        careless = i % 2
        if senders and u < (0.5 if careless else 0.8):
            actions.append(4 + senders[0])
        elif careless and (u < 0.1 or (reference.adjacent_character() is not None and u < 0.7)):
            actions.append(4 + int(rng.integers(reference.n_characters)))
        elif present and i % 4 and u < 0.9:
            actions.append(step_towards(reference, reference.niches[present[0]]))
        else:
            actions.append(int(rng.choice(4, p=[0.35, 0.15, 0.35, 0.15])))
    return torch.tensor(actions)


def step_towards(reference, niche):
    """The move towards the floor cell in front of `niche`, through the doorway row between rooms."""
    (x, y), (nx, ny) = reference.agent_pos, niche
    front_y = 1 if ny == 0 else reference.height - 2
    if (x - 1) // 6 != (nx - 1) // 6 and y != DOORWAY_Y:
        return NORTH if y > DOORWAY_Y else SOUTH
    if x != nx:
        return EAST if nx > x else WEST
    return NORTH if front_y < y else SOUTH


def run_lockstep(twin, references, steps, seed=0, curriculum=None):
    """Drive twin and references together; assert equality each step; return counts of what happened.
    `curriculum`: {step: task parameters} passed to `twin.set_task` before that step."""
    counts = dict.fromkeys(("right", "wrong", "repeated", "failed", "silent", "success", "completed", "truncated"), 0)
    obs, info = twin.reset(seed=seed)
    obs, info = obs.cpu(), {key: value.cpu().numpy() for key, value in info.items()}

    for i, reference in enumerate(references):
        ref_obs, ref_info = reference.reset(options={"layout": twin.layout(i)})
        np.testing.assert_array_equal(ref_obs, obs[i].numpy())
        assert ref_info == {key: info[key][i] for key in COUNTERS}
    returns = np.zeros(len(references), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if step in (curriculum or {}):
            twin.set_task(**curriculum[step])
        actions = policy(references, rng)
        obs, reward, terminated, truncated, info = twin.step(actions.to(twin.device))
        obs = obs.cpu()
        reward, terminated, truncated = (value.cpu().numpy() for value in (reward, terminated, truncated))
        info = {key: value.cpu().numpy() for key, value in info.items()}
        for i, reference in enumerate(references):
            before = reference.counters()
            ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(int(actions[i]))
            change = {key: ref_info[key] - before[key] for key in COUNTERS}  # counted, not read off the reward
            counts["failed"] += change["instructions_failed"]
            counts["silent"] += int(actions[i] >= 4 and not any(change.values()))
            where = f"step {step}, env {i}"
            assert np.float32(ref_reward) == reward[i], where
            assert (ref_terminated, ref_truncated) == (terminated[i], truncated[i]), where
            assert ref_info == {key: info[key][i] for key in COUNTERS}, where
            returns[i] += np.float32(ref_reward)
            counts["right"] += change["instructions_right"]
            counts["wrong"] += change["instructions_wrong"]
            counts["repeated"] += change["instructions_repeated"]
            if ref_terminated or ref_truncated:
                np.testing.assert_array_equal(ref_obs, info["final_obs"][i], err_msg=where)
                assert info["episode_return"][i] == pytest.approx(returns[i], rel=1e-6, abs=1e-5), where
                assert info["episode_length"][i] == reference.step_count, where
                assert info["success"][i] == (
                    ref_info["instructions_right"] == reference.n_instructions and ref_info["instructions_wrong"] == 0
                ), where
                counts["success"] += bool(info["success"][i])
                counts["completed"] += ref_terminated
                counts["truncated"] += ref_truncated
                returns[i] = 0.0
                ref_obs, _ = reference.reset(options={"layout": twin.layout(i)})
            np.testing.assert_array_equal(ref_obs, obs[i].numpy(), err_msg=where)
    return counts


@pytest.mark.parametrize("device", DEVICES)
def test_instruction_twin_matches_the_reference(device):
    twin = BatchedInstructionEnv(32, device=device, **SMALL)
    counts = run_lockstep(twin, [InstructionEnv(**SMALL) for _ in range(32)], 320)  # 10,240 steps
    assert counts["right"] > 300 and counts["wrong"] > 600 and counts["failed"] > 30 and counts["silent"] > 100
    assert 30 < counts["repeated"] < counts["wrong"]
    assert counts["completed"] > 100 and counts["success"] > 20 and counts["truncated"] > 20
    two_rooms = {
        "n_rooms": 2,
        "delay": 30,
        "max_steps": 150,
        "chatter_prob": 0.9,
        "random_homes": False,
        "announce_returns": True,
        "replies": True,
        "random_start": True,
    }
    twin = BatchedInstructionEnv(16, device=device, **two_rooms)
    counts = run_lockstep(twin, [InstructionEnv(**two_rooms) for _ in range(16)], 160, seed=1)
    assert counts["right"] > 20 and counts["wrong"] > 100 and counts["failed"] > 2
    assert counts["completed"] > 5 and counts["truncated"] > 2
    walk_bonus = {**two_rooms, "walk_bonus": 0.05, "announce_returns": False, "replies": False}  # across the doorway
    twin = BatchedInstructionEnv(16, device=device, **walk_bonus)
    counts = run_lockstep(twin, [InstructionEnv(**walk_bonus) for _ in range(16)], 160, seed=4)
    assert counts["right"] > 20 and counts["completed"] > 5 and counts["truncated"] > 2


@pytest.mark.parametrize("device", DEVICES)
def test_instruction_twin_matches_the_reference_through_curriculum_changes(device):
    replies = {**SMALL, "replies": True}  # a reply to free speech too
    twin = BatchedInstructionEnv(32, device=device, **replies)
    free_speech = {"delay": 2, "chatter_prob": 1.0, "wrong_penalty": 0.0}  # speech costs nothing, nothing is wrong
    curriculum = {100: {"delay": 12, "wrong_penalty": 0.35}, 200: free_speech}
    counts = run_lockstep(twin, [InstructionEnv(**replies) for _ in range(32)], 320, seed=3, curriculum=curriculum)
    assert counts["right"] > 200 and counts["wrong"] > 300 and counts["completed"] > 60 and counts["truncated"] > 10
    assert torch.all(twin.layouts["delay"] == 2) and torch.all(twin.layouts["chatter_prob"] == 1.0)
    assert torch.all(twin.layouts["wrong_penalty"] == 0.0) and counts["success"] > 20


@pytest.mark.parametrize("device", DEVICES)
def test_instruction_twin_matches_the_reference_with_default_parameters(device):
    twin = BatchedInstructionEnv(8, device=device)
    counts = run_lockstep(twin, [InstructionEnv() for _ in range(8)], 400, seed=2)
    assert counts["right"] >= 2 and counts["wrong"] > 100  # the first targets return after 300 steps


def test_set_task_changes_only_the_episodes_that_begin_after_it():
    twin = BatchedInstructionEnv(16, **SMALL)  # delay 4, 60 steps
    twin.reset(seed=0)
    walk = torch.full((16,), NORTH)  # moves only: every episode runs to the time limit, all at once
    for _ in range(10):
        twin.step(walk)
    twin.set_task(delay=9, wrong_penalty=0.5, chatter_prob=0.0)
    for _ in range(49):  # the running episodes keep the values they began with
        twin.step(walk)
        assert torch.all(twin.layouts["delay"] == 4) and torch.all(twin.layouts["wrong_penalty"] == 0.1)
    _, _, _, truncated, _ = twin.step(walk)
    assert truncated.all()
    assert torch.all(twin.layouts["delay"] == 9) and torch.all(twin.layouts["wrong_penalty"] == 0.5)
    spacing = (60 - 9) // 4  # the schedule follows the new delay
    assert torch.all(twin.layouts["times"] // spacing == torch.arange(3))
    for i in range(16):  # the reference plays the twin's new episodes with their values
        reference = InstructionEnv(**SMALL)
        reference.reset(options={"layout": twin.layout(i)})
        assert (reference.episode_delay, reference.episode_penalty, reference.episode_chatter_prob) == (9, 0.5, 0.0)
    with pytest.raises(ValueError, match=r"cannot change n_rooms between episodes \(changeable: delay, wrong_penalty"):
        twin.set_task(n_rooms=2)
    with pytest.raises(ValueError, match=r"delay must be an integer in \[1, 56\], got 57"):
        twin.set_task(delay=57)
    with pytest.raises(ValueError, match=r"chatter_prob must be a number in \[0.0, 1.0\], got 2"):
        twin.set_task(chatter_prob=2)


def test_make_vec_gives_the_twin_with_the_reference_spaces():
    twin = gym.make_vec("Instruction-v0", num_envs=4, vectorization_mode="vector_entry_point", n_rooms=2)
    reference = gym.make("Instruction-v0", n_rooms=2).unwrapped
    assert isinstance(twin, BatchedInstructionEnv)
    assert twin.single_observation_space == reference.observation_space
    assert twin.single_action_space == reference.action_space and twin.vocab == reference.vocab
    with pytest.raises(ValueError, match=r"actions must be integers in \[0, 11\]"):
        twin.reset(seed=0)
        twin.step(torch.tensor([0, 1, 12, 3]))


def test_twin_renders_env_zero_like_its_reference():
    twin = BatchedInstructionEnv(2, render_mode="ansi", n_rooms=2)
    twin.reset(seed=0)
    reference = InstructionEnv(render_mode="ansi", n_rooms=2)
    reference.reset(options={"layout": twin.layout(0)})
    for action in (0, 1, 1, 2, 3, 1, 5, 1, 1, 1):
        twin.step(torch.tensor([action, action]))
        reference.step(action)
        assert twin.render() == reference.render()
    drawn = BatchedInstructionEnv(2, render_mode="rgb_array", n_rooms=2)
    drawn.reset(seed=0)
    assert drawn.render().shape == (7 * 32, 13 * 32, 3)
