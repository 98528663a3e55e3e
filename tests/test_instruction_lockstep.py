"""The batched Instruction twin reproduces the reference exactly, step by step, and resumes exactly.

The twin and N reference envs are driven in lockstep on the same episode layouts (each reference is
reset with `twin.layout(i)` whenever env i starts an episode) and the same actions, from a random
policy that peeks at the references' state: next to the target of a pending instruction it usually
says the right sender, half the envs also say random senders (to characters or to nobody), else it
walks, preferring north and south where the niches are. Observations, rewards, terminated,
truncated, the instruction counters, final observations and episode statistics must be identical
at every step; small parameters make right and wrong executions, completed and truncated episodes
happen many times.
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
COUNTERS = ("instructions_received", "instructions_right", "instructions_wrong")


def policy(references, rng):
    """Actions (N,) from the references' state: next to the target of a pending instruction, usually
    say its sender, else often walk towards such a target (but not envs 0, 4, 8, ...); careless envs
    (odd i) also say random senders, to characters or to nobody; else walk at random, mostly north-south."""
    actions = []
    for i, reference in enumerate(references):
        t, u = reference.step_count, rng.random()
        pending = [
            (target, sender)
            for (time, target, sender), done in zip(reference.schedule, reference.executed, strict=True)
            if time <= t and not done
        ]
        senders = [sender for target, sender in pending if target == reference.adjacent_character()]
        present = [target for target, _ in pending if reference.present(t)[target]]
        if senders and u < 0.8:
            actions.append(4 + senders[0])
        elif i % 2 and (u < 0.1 or (reference.adjacent_character() is not None and u < 0.5)):
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


def run_lockstep(twin, references, steps, seed=0):
    """Drive twin and references together; assert equality each step; return counts of what happened."""
    counts = {"right": 0, "wrong": 0, "success": 0, "completed": 0, "truncated": 0}
    obs, info = twin.reset(seed=seed)
    obs, info = obs.cpu(), {key: value.cpu().numpy() for key, value in info.items()}

    for i, reference in enumerate(references):
        ref_obs, ref_info = reference.reset(options={"layout": twin.layout(i)})
        np.testing.assert_array_equal(ref_obs, obs[i].numpy())
        assert ref_info == {key: info[key][i] for key in COUNTERS}
    returns = np.zeros(len(references), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        actions = policy(references, rng)
        obs, reward, terminated, truncated, info = twin.step(actions.to(twin.device))
        obs = obs.cpu()
        reward, terminated, truncated = (value.cpu().numpy() for value in (reward, terminated, truncated))
        info = {key: value.cpu().numpy() for key, value in info.items()}
        for i, reference in enumerate(references):
            ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(int(actions[i]))
            where = f"step {step}, env {i}"
            assert np.float32(ref_reward) == reward[i], where
            assert (ref_terminated, ref_truncated) == (terminated[i], truncated[i]), where
            assert ref_info == {key: info[key][i] for key in COUNTERS}, where
            returns[i] += np.float32(ref_reward)
            counts["right"] += ref_reward == 1
            counts["wrong"] += ref_reward < 0
            if ref_terminated or ref_truncated:
                np.testing.assert_array_equal(ref_obs, info["final_obs"][i], err_msg=where)
                assert info["episode_return"][i] == pytest.approx(returns[i], rel=1e-6, abs=1e-5), where
                assert info["episode_length"][i] == reference.step_count, where
                assert info["success"][i] == (ref_terminated and ref_info["instructions_wrong"] == 0), where
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
    assert counts["right"] > 300 and counts["wrong"] > 300
    assert counts["completed"] > 20 and counts["success"] > 5 and counts["truncated"] > 20
    two_rooms = {"n_rooms": 2, "delay": 30, "max_steps": 150, "chatter_prob": 0.9}
    twin = BatchedInstructionEnv(16, device=device, **two_rooms)
    counts = run_lockstep(twin, [InstructionEnv(**two_rooms) for _ in range(16)], 160, seed=1)
    assert counts["right"] > 20 and counts["wrong"] > 50 and counts["completed"] > 5 and counts["truncated"] > 2


@pytest.mark.parametrize("device", DEVICES)
def test_instruction_twin_matches_the_reference_with_default_parameters(device):
    twin = BatchedInstructionEnv(8, device=device)
    counts = run_lockstep(twin, [InstructionEnv() for _ in range(8)], 400, seed=2)
    assert counts["right"] >= 2 and counts["wrong"] > 100  # the first targets return after 300 steps


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
