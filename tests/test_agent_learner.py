"""The learner's rules: acting equals recomputing, nothing leaks across episode starts, ends bootstrap correctly."""

import shutil

import numpy as np
import pytest
import torch

from agents.acting import GraphedActing, compiled_acting, eager_acting, sample_actions
from agents.envs import make_batched_env
from agents.episode_stats import TASK_COUNTERS, EpisodeStats
from agents.policy import Policy
from agents.rollout import Carry, Timing, collect, gae
from agents.trainer import Trainer
from training.config import resolve
from training.distributed import World

CPU = World(rank=0, world_size=1, device=torch.device("cpu"))
SHORT_CORRIDOR = {"min_length": 3, "max_length": 6, "max_steps": 12}  # episodes end inside every window
MODELS = ["lstm", "gru", "expire_span", "expire_span_fixed_cache", "transformer_xl"]


def tiny_policy(model: str, env, **options) -> Policy:
    """``model``: a memory model's name, or expire_span_fixed_cache (Expire-Span with compact=False)."""
    torch.manual_seed(0)
    config = {"d_model": 32, "n_layers": 2, "n_heads": 2, **options}
    if model == "expire_span_fixed_cache":
        model, config["compact"] = "expire_span", False
    if model == "expire_span":
        config.update(max_span=8, ramp=4)
    if model == "transformer_xl":
        config.update(mem_len=8)
    vocab, actions = env.single_observation_space.shape[-1], int(env.single_action_space.n)
    return Policy(vocab, actions, embed_dim=8, model_name=model, model_config=config)


def corridor_rollout(model: str, num_envs: int = 6, unroll: int = 30, seed: int = 0):
    env = make_batched_env("corridor", num_envs, "cpu", **SHORT_CORRIDOR)
    policy = tiny_policy(model, env).eval()
    obs, _ = env.reset(seed=seed)
    carry = Carry(obs, torch.ones(num_envs, dtype=torch.bool), policy.initial_state(num_envs, "cpu"))
    stats = EpisodeStats(num_envs, torch.device("cpu"))
    rollout, carry = collect(policy, eager_acting(policy), env, carry, unroll, [stats], Timing())
    return policy, env, rollout, carry


@pytest.mark.parametrize("model", MODELS)
def test_recomputed_window_equals_acting_in_eval_mode(model):
    policy, _, rollout, _ = corridor_rollout(model)
    assert rollout.first[:, 1:].any(), "the window should hold episode starts"
    with torch.no_grad():
        logits, _, _, _ = policy(rollout.obs, rollout.start_state, rollout.first)
    torch.testing.assert_close(logits, rollout.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_steps_before_an_episode_start_do_not_reach_the_learner(model):
    """Two windows whose rows differ only before each row's first episode start give equal logits after it."""
    policy, _, rollout, carry = corridor_rollout(model, seed=1)
    later = rollout.first[:, 1:]  # N x (T - 1)
    starts = later.float().argmax(1) + 1  # N: each row's first episode start after step 0
    rows = torch.nonzero(later.any(1)).flatten()
    assert len(rows) > 0, "some row should start an episode inside the window"
    obs = rollout.obs.clone()
    before = torch.arange(obs.shape[1]) < starts[:, None]  # N x T: steps of the previous episode
    obs[before] = torch.randint_like(obs[before], 0, 2)  # other observations before the start
    with torch.no_grad():
        reference, _, _, _ = policy(rollout.obs, rollout.start_state, rollout.first)
        changed, _, _, _ = policy(obs, carry.state, rollout.first)  # another memory before the window too
    for row in rows.tolist():
        torch.testing.assert_close(changed[row, starts[row] :], reference[row, starts[row] :], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_acting_ignores_the_memory_of_episodes_that_ended(model):
    """From the same env state and random stream, acting after an episode start is the same whatever came before."""
    env = make_batched_env("corridor", 4, "cpu", **SHORT_CORRIDOR)
    policy = tiny_policy(model, env).eval()
    stats, timing = EpisodeStats(4, torch.device("cpu")), Timing()
    obs, _ = env.reset(seed=3)
    history = Carry(obs, torch.ones(4, dtype=torch.bool), policy.initial_state(4, "cpu"))
    # a memory full of other episodes
    _, history = collect(policy, eager_acting(policy), env, history, 20, [stats], timing)
    env_state, windows = env.state_dict(), []
    for state in (history.state, policy.initial_state(4, "cpu")):
        env.load_state_dict(env_state)
        torch.manual_seed(7)
        start = Carry(history.obs, torch.ones(4, dtype=torch.bool), state)  # every row starts an episode here
        windows.append(collect(policy, eager_acting(policy), env, start, 25, [stats], timing)[0])
    assert torch.equal(windows[0].actions, windows[1].actions)
    torch.testing.assert_close(windows[0].logits, windows[1].logits, rtol=1e-5, atol=1e-5)


# The models whose state keeps its shapes, with the options that make it so.
GRAPHED = {"transformer_xl": {}, "expire_span": {"compact": False}, "lstm": {}, "compressive": {}, "memformer": {}}


def assert_step_equals_eager(model: str, device: str, wrap) -> None:
    """Over 30 steps of short episodes, ``wrap(policy, obs, state, first)`` gives the eager step's logits, values
    and state."""
    env = make_batched_env("corridor", 5, device, **SHORT_CORRIDOR)
    policy = tiny_policy(model, env, **GRAPHED[model]).to(device).eval()
    obs, _ = env.reset(seed=0)
    first = torch.ones(5, dtype=torch.bool, device=device)
    state = eager_state = policy.initial_state(5, device)
    eager = eager_acting(policy)
    step = wrap(policy, obs, state, first)
    for _ in range(30):  # episodes of at most 12 steps: starts and ends inside
        logits, value, state = step(obs, state, first)
        eager_logits, eager_value, eager_state = eager(obs, eager_state, first)
        torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(value, eager_value, atol=1e-5, rtol=1e-5)
        obs, _, terminated, truncated, _ = env.step(sample_actions(logits))
        first = terminated | truncated
    for tensor, eager_tensor in zip(state.tensors(), eager_state.tensors(), strict=True):
        torch.testing.assert_close(tensor, eager_tensor, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", GRAPHED)
def test_a_graphed_acting_step_equals_the_eager_one(model):
    assert_step_equals_eager(model, "cuda", lambda policy, *inputs: GraphedActing(eager_acting(policy), *inputs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_compiled_and_graphed_acting_step_equals_the_eager_one():
    assert_step_equals_eager(
        "expire_span", "cuda", lambda policy, *inputs: GraphedActing(compiled_acting(policy), *inputs)
    )


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("model", ["expire_span", "transformer_xl"])  # the quick preset compiles expire_span's step
def test_a_compiled_acting_step_equals_the_eager_one(model):
    assert_step_equals_eager(model, "cpu", lambda policy, *inputs: compiled_acting(policy))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_trainer_acts_through_a_cuda_graph_when_the_state_is_static():
    cuda = World(rank=0, world_size=1, device=torch.device("cuda"))
    config = tiny_config()
    config["model"]["expire_span"]["compact"] = False
    trainer = Trainer("corridor", "expire_span", config, cuda, seed=0)
    assert trainer.graphed and trainer.acting_mode == "CUDA graph"
    for _ in range(3):
        metrics, _ = trainer.update()
    assert all(torch.isfinite(value) for value in metrics.values())
    config["model"]["expire_span"]["compact"] = True
    assert not Trainer("corridor", "expire_span", config, cuda, seed=0).graphed


def test_a_model_whose_state_changes_shape_acts_eagerly_whatever_the_config():
    config = tiny_config()
    config["train"].update(compile_acting=True, cuda_graphs=True)
    trainer = Trainer("corridor", "adaptive_span", config, CPU, seed=0)
    assert trainer.acting_mode == "eager (adaptive_span's state changes shape from call to call)"
    trainer.update()


def test_without_a_cpp_compiler_a_cpu_run_acts_eagerly_and_says_why(monkeypatch):
    config = tiny_config()
    config["train"]["compile_acting"] = True
    monkeypatch.setattr(shutil, "which", lambda name: None)
    trainer = Trainer("corridor", "transformer_xl", config, CPU, seed=0)
    assert trainer.acting_mode.startswith("eager (torch.compile on CPU needs a C++ compiler")
    trainer.update()


def reference_gae(rewards, values, bootstrap, terminated, truncated, discount, lam):
    """Per-element GAE, written out: no bootstrap at true ends, V(s_t) at time limits, bootstrap at window end."""
    n, t_len = rewards.shape
    advantages = np.zeros((n, t_len))
    for i in range(n):
        running = 0.0
        for t in reversed(range(t_len)):
            if terminated[i, t]:
                next_value, running = 0.0, 0.0
            elif truncated[i, t]:
                next_value, running = values[i, t], 0.0
            else:
                next_value = values[i, t + 1] if t + 1 < t_len else bootstrap[i]
            delta = rewards[i, t] + discount * next_value - values[i, t]
            running = delta + discount * lam * running
            advantages[i, t] = running
    return advantages


def test_gae_stops_at_true_ends_and_bootstraps_at_time_limits_and_window_ends():
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(5, 9, generator=generator), torch.rand(5, 9, generator=generator)
    bootstrap = torch.rand(5, generator=generator)
    terminated = torch.rand(5, 9, generator=generator) < 0.2
    truncated = (torch.rand(5, 9, generator=generator) < 0.2) & ~terminated
    advantages, returns = gae(rewards, values, bootstrap, terminated, truncated, 0.9, 0.8)
    expected = reference_gae(*(x.numpy() for x in (rewards, values, bootstrap, terminated, truncated)), 0.9, 0.8)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(returns, advantages + values)
    ended = torch.zeros(1, 1, dtype=torch.bool)
    _, target = gae(torch.ones(1, 1), torch.zeros(1, 1), torch.full((1,), 5.0), ended | True, ended, 0.9, 0.8)
    assert target.item() == 1.0  # a true end ignores the bootstrap value


def tiny_config() -> dict:
    config = resolve(
        "configs/corridor_quick.toml",
        overrides=["train.num_envs=3", "ppo.minibatches=3", "train.unroll=10", "model.d_model=16", "model.n_heads=2"]
        + ["train.compile_acting=false"],  # compiling takes seconds; tested apart
    )
    config["env"].update(SHORT_CORRIDOR)
    return config


def test_training_is_deterministic_under_a_fixed_seed():
    runs = []
    for _ in range(2):
        trainer = Trainer("corridor", "expire_span", tiny_config(), CPU, seed=5)
        for _ in range(3):
            trainer.update()
        runs.append(trainer.policy.state_dict())
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), name


@pytest.mark.parametrize("algorithm", ["a2c", "ppo"])
def test_an_update_changes_every_parameter_the_loss_reaches(algorithm):
    config = tiny_config()
    config["train"]["algorithm"] = algorithm
    trainer = Trainer("corridor", "lstm", config, CPU, seed=0)
    before = {name: value.clone() for name, value in trainer.policy.named_parameters()}
    metrics, record = trainer.update()
    assert all(torch.isfinite(value) for value in metrics.values())
    changed = [name for name, value in trainer.policy.named_parameters() if not torch.equal(value, before[name])]
    assert sorted(changed) == sorted(before)
    assert record.memory_size.shape == (2,)


def test_episode_stats_average_finished_episodes_and_instruction_accuracy():
    stats = EpisodeStats(3, torch.device("cpu"))
    info = {
        "episode_return": torch.tensor([1.0, 5.0, 0.0]),
        "episode_length": torch.tensor([10, 99, 30]),
        "success": torch.tensor([True, True, False]),
        "instructions_received": torch.tensor([4, 9, 2]),
        "instructions_right": torch.tensor([3, 9, 0]),
        "instructions_failed": torch.tensor([1, 0, 1]),
        "instructions_wrong": torch.tensor([4, 9, 1]),
    }
    stats.add(torch.tensor([True, False, True]), info)  # the middle env's episode has not ended: ignored
    read = stats.read()
    assert read["episodes"] == 2 and read["return"] == 0.5 and read["length"] == 20 and read["success"] == 0.5
    assert read["instructions_received"] == 3 and read["instruction_accuracy"] == 3 / 5
    assert stats.read() is None  # read starts afresh
    for name in ("instructions_received", "instructions_right", "instructions_failed", "instructions_wrong"):
        del info[name]
    stats.add(torch.tensor([True, True, True]), info)
    assert "instruction_accuracy" not in stats.read()  # tasks without instructions report none


def test_episode_stats_resume_a_checkpoint_from_before_a_counter_existed_with_it_at_zero():
    stats = EpisodeStats(2, torch.device("cpu"))
    info = {name: torch.tensor([2, 3]) for name in TASK_COUNTERS}
    info |= {"episode_return": torch.tensor([1.0, 2.0]), "episode_length": torch.tensor([5, 7])}
    info["success"] = torch.ones(2)
    stats.add(torch.tensor([True, True]), info)
    old = stats.state_dict()
    del old["instructions_repeated"]  # what a checkpoint written before that counter holds
    resumed = EpisodeStats(2, torch.device("cpu"))
    resumed.sums["instructions_repeated"] += 9  # stale: must not survive the load
    resumed.load_state_dict(old)
    read = resumed.read()
    assert read["instructions_repeated"] == 0 and read["instructions_wrong"] == 2.5 and read["length"] == 6
