"""The batched twins reproduce their reference envs exactly, step by step, and resume exactly.

Each twin and N reference envs are driven in lockstep on the same episode layouts (each reference
is reset with `twin.layout(i)` whenever env i starts an episode) and the same random actions;
observations, rewards, terminated, truncated, final observations and episode statistics must be
identical at every step. Biased random policies and small parameters make every kind of episode end
happen many times; the default parameters are run too.
"""

import io

import numpy as np
import pytest
import torch

from envs.corridor import CorridorEnv
from envs.corridor_batched import BatchedCorridorEnv
from envs.instruction_batched import BatchedInstructionEnv
from envs.portal import PortalEnv
from envs.portal_batched import BatchedPortalEnv

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


def run_lockstep(twin, references, steps, action_probs, seed=0, curriculum=None):
    """Drive twin and references together; assert equality each step; return counts of what happened.
    `curriculum`: {step: task parameters} passed to `twin.set_task` before that step."""
    n = twin.num_envs
    counts = {"success": 0, "failure": 0, "truncated": 0, "back_to_room_one": 0}
    obs, _ = twin.reset(seed=seed)
    for i, reference in enumerate(references):
        np.testing.assert_array_equal(reference.reset(options={"layout": twin.layout(i)})[0], obs[i].cpu().numpy())
    returns, lengths = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.int64)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if step in (curriculum or {}):
            twin.set_task(**curriculum[step])
        actions = torch.multinomial(torch.tensor(action_probs), n, replacement=True, generator=generator)
        rooms_before = [getattr(reference, "room", 0) for reference in references]
        obs, reward, terminated, truncated, info = twin.step(actions.to(twin.device))
        obs, reward, terminated, truncated = (value.cpu().numpy() for value in (obs, reward, terminated, truncated))
        info = {key: value.cpu().numpy() for key, value in info.items()}
        actions = actions.tolist()
        for i, reference in enumerate(references):
            ref_obs, ref_reward, ref_terminated, ref_truncated, _ = reference.step(actions[i])
            where = f"step {step}, env {i}"
            assert np.float32(ref_reward) == reward[i], where
            assert (ref_terminated, ref_truncated) == (terminated[i], truncated[i]), where
            returns[i] += np.float32(ref_reward)
            lengths[i] += 1
            counts["back_to_room_one"] += rooms_before[i] > 0 and getattr(reference, "room", 0) == 0
            if ref_terminated or ref_truncated:
                np.testing.assert_array_equal(ref_obs, info["final_obs"][i], err_msg=where)
                assert info["episode_return"][i] == pytest.approx(returns[i], rel=1e-6), where
                assert info["episode_length"][i] == lengths[i], where
                success = bool(info["success"][i])
                counts["success" if success else "failure" if ref_terminated else "truncated"] += 1
                returns[i], lengths[i] = 0.0, 0
                ref_obs, _ = reference.reset(options={"layout": twin.layout(i)})
            assert np.array_equal(ref_obs, obs[i]), where
    return counts


@pytest.mark.parametrize("device", DEVICES)
def test_corridor_twin_matches_the_reference(device):
    short = {"min_length": 3, "max_length": 12, "max_steps": 40}
    twin = BatchedCorridorEnv(32, device=device, **short)
    counts = run_lockstep(twin, [CorridorEnv(**short) for _ in range(32)], 400, [0.2, 0.45, 0.2, 0.15])
    assert counts["success"] > 100 and counts["failure"] > 100 and counts["truncated"] > 20
    twin = BatchedCorridorEnv(16, device=device)  # the paper's U(3, 200)
    counts = run_lockstep(twin, [CorridorEnv() for _ in range(16)], 300, [0.05, 0.9, 0.05, 0.0], seed=1)
    assert counts["success"] + counts["failure"] > 5


@pytest.mark.parametrize("device", DEVICES)
def test_portal_twin_matches_the_reference(device):
    small = {"n_rooms": 3, "max_steps": 100}
    twin = BatchedPortalEnv(32, device=device, **small)
    counts = run_lockstep(twin, [PortalEnv(**small) for _ in range(32)], 400, [0.45, 0.05, 0.45, 0.05])
    assert counts["success"] > 20 and counts["failure"] > 20 and counts["truncated"] > 20
    assert counts["back_to_room_one"] > 20
    twin = BatchedPortalEnv(12, device=device)  # the paper's 50 rooms and 1000 steps
    counts = run_lockstep(twin, [PortalEnv() for _ in range(12)], 1050, [0.04, 0.46, 0.04, 0.46], seed=1)
    assert counts["truncated"] > 3 and counts["failure"] > 0 and counts["back_to_room_one"] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_portal_twin_matches_the_reference_through_rooms_curriculum_changes(device):
    small = {"n_rooms": 4, "max_steps": 100}
    twin = BatchedPortalEnv(32, device=device, active_rooms=2, **small)
    curriculum = {150: {"active_rooms": 4}, 300: {"active_rooms": 3}}
    probs = [0.45, 0.05, 0.45, 0.05]
    counts = run_lockstep(twin, [PortalEnv(**small) for _ in range(32)], 450, probs, seed=2, curriculum=curriculum)
    assert counts["success"] > 40 and counts["failure"] > 20 and counts["truncated"] > 5
    assert torch.all(twin.layouts["rooms"] == 3)


def test_portal_set_task_changes_only_the_episodes_that_begin_after_it():
    twin = BatchedPortalEnv(8, n_rooms=6, max_steps=40, active_rooms=5)
    twin.reset(seed=0)
    walk = torch.full((8,), 1)  # east, into the wall: every episode runs to the time limit, all at once
    for _ in range(10):
        twin.step(walk)
    twin.set_task(active_rooms=2)
    for _ in range(29):
        twin.step(walk)
        assert torch.all(twin.layouts["rooms"] == 5)
    _, _, _, truncated, _ = twin.step(walk)
    assert truncated.all() and torch.all(twin.layouts["rooms"] == 2)
    with pytest.raises(ValueError, match=r"cannot change n_rooms between episodes \(changeable: active_rooms\)"):
        twin.set_task(n_rooms=3)
    with pytest.raises(ValueError, match=r"active_rooms must be an integer in \[2, 6\], got 7"):
        twin.set_task(active_rooms=7)


RESTORE_CASES = [
    (BatchedCorridorEnv, {"max_length": 8, "max_steps": 30}),
    (BatchedPortalEnv, {"n_rooms": 3, "max_steps": 60}),
    (
        BatchedInstructionEnv,
        {"n_rooms": 1, "n_characters": 3, "n_instructions": 3, "delay": 4, "n_wanderers": 3, "max_steps": 60},
    ),
]


@pytest.mark.parametrize("twin_class, kwargs", RESTORE_CASES, ids=lambda case: getattr(case, "__name__", ""))
def test_restored_twin_continues_identically(twin_class, kwargs):
    original = twin_class(8, **kwargs)
    generator = torch.Generator().manual_seed(0)
    actions = torch.randint(0, int(original.single_action_space.n), (300, 8), generator=generator)
    original.reset(seed=5)
    for t in range(100):
        original.step(actions[t])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    restored = twin_class(8, **kwargs)
    restored.reset(seed=123)
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    ends = 0
    for t in range(100, 300):
        a, b = original.step(actions[t]), restored.step(actions[t])
        for x, y in zip(a[:4], b[:4], strict=True):
            assert torch.equal(x, y), t
        assert a[4].keys() == b[4].keys()
        for key in a[4]:
            assert torch.equal(a[4][key], b[4][key]), (t, key)
        ends += int((a[2] | a[3]).sum())
    assert ends > 10  # new layouts were drawn from the restored generator


@pytest.mark.parametrize("twin_class", [BatchedCorridorEnv, BatchedPortalEnv])
def test_twin_renders_env_zero_like_its_reference(twin_class):
    twin = twin_class(2, render_mode="ansi")
    twin.reset(seed=0)
    reference = twin_class.reference_class(render_mode="ansi")
    reference.reset(options={"layout": twin.layout(0)})
    for action in (0, 1, 1, 2, 3, 1):
        twin.step(torch.tensor([action, action]))
        reference.step(action)
        assert twin.render() == reference.render()
    assert twin_class(2, render_mode="rgb_array").render() is None  # nothing to draw before reset
    drawn = twin_class(2, render_mode="rgb_array")
    drawn.reset(seed=0)
    assert drawn.render().shape == (reference.grid.height * 32, reference.grid.width * 32, 3)
