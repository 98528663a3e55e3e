"""Any gymnasium env: one short training run per observation space kind, both autoreset modes, reset steps never
learned from, exact resume, and unsupported spaces named."""

import copy

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

import tests.tiny_envs  # noqa: F401  (registers Tiny-<kind>-v0)
from agents.a2c import A2C
from agents.encoders import ImageEncoder, SpaceEncoder
from agents.gym_env import GymVectorEnv
from agents.learner import action_log_probs
from agents.rollout import collect
from agents.spaces import action_splits, without_text
from agents.trainer import Trainer
from runners import train_agent
from tests.tiny_envs import KINDS
from training.checkpoint import load_checkpoint
from training.config import resolve
from training.distributed import World

CPU = World(rank=0, world_size=1, device=torch.device("cpu"))
SMALL = [
    "train.num_envs=4",
    "train.unroll=8",
    "train.cpu_threads=1",
    "model.d_model=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "ppo.minibatches=2",
    "ppo.epochs=2",
]


def small_config(*overrides: str) -> dict:
    return resolve(train_agent.CONFIG_DIR / train_agent.DEFAULT_PRESET, None, [*SMALL, *overrides])


def gym_config(**changes) -> dict:
    return {**small_config()["gym"], **changes}


@pytest.mark.parametrize("autoreset", ["next_step", "same_step"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_run_learns_on_every_observation_space(kind, autoreset):
    config = small_config(f"gym.autoreset={autoreset!r}".replace("'", '"'))
    trainer = Trainer(f"tests.tiny_envs:Tiny-{kind}-v0", "lstm", config, CPU, seed=0)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    for _ in range(3):
        metrics, _ = trainer.update()
    assert all(torch.isfinite(value).all() for value in metrics.values())
    assert metrics["policy/kl_acting_learner"].abs() < 1e-5  # the learner recomputed the policy that acted
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters(), strict=True))
    episodes = trainer.stats.read()
    assert episodes["episodes"] > 0 and 2 <= episodes["length"] <= 3  # 2-4 steps, truncated at 3
    assert trainer.env.reports_success and 0 <= episodes["success"] <= 1


def test_next_step_marks_reset_steps_and_same_step_has_none():
    for autoreset, expect_valid in (("next_step", True), ("same_step", False)):
        env = GymVectorEnv("Tiny-box-v0", 4, "cpu", gym_config(autoreset=autoreset))
        obs, _ = env.reset(seed=0)
        done_before = torch.zeros(4, dtype=torch.bool)
        for _ in range(12):
            obs, _, terminated, truncated, info = env.step(torch.randint(0, 3, (4,)))
            if expect_valid:
                assert torch.equal(info["reset_step"], done_before)  # the step after an end only resets
                assert not (info["reset_step"] & (terminated | truncated)).any()
            else:
                assert "reset_step" not in info
            done_before = terminated | truncated
        assert (env.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP) == expect_valid


def next_step_rollout(seed: int = 0):
    config = small_config('train.algorithm="a2c"')
    trainer = Trainer("Tiny-box-v0", "lstm", config, CPU, seed=seed)
    rollout, _ = collect(
        trainer.policy, trainer.acting_step, trainer.env, trainer.carry, 12, [trainer.stats], trainer.timing
    )
    return trainer, rollout


def test_the_transition_across_an_episode_end_is_never_learned_from():
    """Changing what happens in reset steps (their actions and rewards, which the env ignored) changes nothing the
    learner does; treating them as transitions would."""
    trainer, rollout = next_step_rollout()
    assert rollout.valid is not None and (~rollout.valid).any()
    invalid = ~rollout.valid  # N x T
    tampered = copy.copy(rollout)
    tampered.actions = torch.where(invalid, (rollout.actions + 1) % 3, rollout.actions)
    tampered.rewards = torch.where(invalid, torch.full_like(rollout.rewards, 5.0), rollout.rewards)
    learned_from_all = copy.copy(tampered)
    learned_from_all.valid = None

    def parameters_after(window):
        policy = copy.deepcopy(trainer.policy)
        learner = A2C(policy, torch.optim.Adam(policy.parameters(), lr=1e-2), trainer.config["train"])
        advantages, _ = learner.advantages(window)
        learner.update(window)
        return advantages, [p.detach().clone() for p in policy.parameters()]

    advantages, reference = parameters_after(rollout)
    tampered_advantages, after_tampering = parameters_after(tampered)
    assert torch.equal(advantages, tampered_advantages)
    assert (advantages[invalid] == 0).all()
    for a, b in zip(reference, after_tampering, strict=True):
        assert torch.equal(a, b)
    _, unmasked = parameters_after(learned_from_all)
    assert any(not torch.equal(a, b) for a, b in zip(reference, unmasked, strict=True))


def test_an_episode_start_after_a_reset_step_restarts_the_memory():
    _, rollout = next_step_rollout(seed=1)
    invalid = ~rollout.valid  # N x T
    following = torch.zeros_like(invalid)
    following[:, 1:] = invalid[:, :-1]  # N x T: the step after a reset step
    assert following.any() and rollout.first[following].all()


def test_exact_resume_matches_the_uninterrupted_run(tmp_path):
    common = ["--env", "tests.tiny_envs:Tiny-dict-v0", "--model", "lstm", *sum((["--set", s] for s in SMALL), [])]
    common += ["--set", "log.eval_episodes=0", "--set", "log.checkpoint_every_updates=1"]
    assert train_agent.main([*common, "--steps", "96", "--logdir", str(tmp_path / "whole")]) == 0
    assert train_agent.main([*common, "--steps", "48", "--logdir", str(tmp_path / "part")]) == 0
    (partial,) = (tmp_path / "part").glob("*/checkpoint.pt")
    assert load_checkpoint(partial)["ranks"][0]["env"]["exact"]
    assert train_agent.main(["--resume", str(partial), "--steps", "96"]) == 0
    (whole,) = (tmp_path / "whole").glob("*/checkpoint.pt")
    whole_payload, resumed = load_checkpoint(whole), load_checkpoint(partial)
    for name, value in whole_payload["policy"].items():
        assert torch.equal(value, resumed["policy"][name]), name
    assert torch.equal(whole_payload["ranks"][0]["carry"]["obs"], resumed["ranks"][0]["carry"]["obs"])


def test_an_env_that_cannot_save_its_state_resumes_with_fresh_episodes_and_says_so(tmp_path, capsys):
    common = ["--env", "tests.tiny_envs:TinyStateless-v0", "--model", "none", *sum((["--set", s] for s in SMALL), [])]
    assert train_agent.main([*common, "--steps", "32", "--logdir", str(tmp_path), "--set", "log.eval_episodes=0"]) == 0
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    assert not load_checkpoint(checkpoint)["ranks"][0]["env"]["exact"]
    capsys.readouterr()
    assert train_agent.main(["--resume", str(checkpoint), "--steps", "64"]) == 0
    assert "cannot save its state" in capsys.readouterr().out


def test_cartpole_trains_on_the_default_preset_and_evaluates_without_success(tmp_path, capsys):
    args = ["--env", "CartPole-v1", "--model", "gru", "--steps", "64", "--logdir", str(tmp_path)]
    args += [*sum((["--set", s] for s in SMALL), []), "--set", "log.eval_episodes=2"]
    assert train_agent.main(args) == 0
    out = capsys.readouterr().out
    assert "held-out evaluation (2 episodes): sampled return" in out and "success" not in out
    assert list(tmp_path.glob("CartPole-v1-gru-seed0-*/rollout-step*.gif"))


def test_env_arguments_from_the_config_reach_gymnasium_make():
    """The generic preset's [env] is open: a time limit set there truncates every episode at it."""
    truncated_at_5 = {}
    for limit in (5, 500):
        env = Trainer("CartPole-v1", "none", small_config(f"env.max_episode_steps={limit}"), CPU, seed=0).env
        env.reset(seed=0)
        for _ in range(5):  # pushed one way for 5 steps: no pole falls yet
            _, _, terminated, truncated, _ = env.step(torch.tensor([0, 1, 0, 1]))
        assert not terminated.any()
        truncated_at_5[limit] = truncated.tolist()
    assert truncated_at_5 == {5: [True] * 4, 500: [False] * 4}


def test_an_unknown_env_names_the_choices(capsys):
    with pytest.raises(SystemExit):
        train_agent.main(["--env", "NoSuchEnv-v0"])
    err = capsys.readouterr().err
    assert "corridor, portal, instruction" in err and "gymnasium id" in err


def test_unsupported_spaces_stop_with_what_is_supported():
    with pytest.raises(ValueError, match="unsupported action space Box.*supported: Discrete and MultiDiscrete"):
        action_splits(spaces.Box(-1, 1, (2,)))
    graph = spaces.Graph(node_space=spaces.Discrete(3), edge_space=None)
    with pytest.raises(ValueError, match="unsupported observation space Graph.*supported: Box, Discrete"):
        without_text(spaces.Dict({"graph": graph}))
    with pytest.raises(ValueError, match="unsupported action space"):
        GymVectorEnv("Pendulum-v1", 2, "cpu", gym_config())


def test_encoders_follow_the_space():
    space = without_text(gymnasium.make("Tiny-dict-v0").observation_space)
    assert set(space.spaces) == {"cue", "pos"}  # the mission text is dropped
    image = SpaceEncoder(spaces.Box(0, 255, (6, 6, 3), np.uint8), 16, 4, 8, False)
    assert isinstance(image.parts[0], ImageEncoder)
    assert image(torch.zeros(2, 5, 6, 6, 3, dtype=torch.uint8)).shape == (2, 5, 16)
    symbolic = SpaceEncoder(spaces.Box(0, 255, (6, 6, 3), np.uint8), 16, 4, 8, False, "symbolic")
    assert symbolic(torch.zeros(2, 5, 6, 6, 3, dtype=torch.uint8)).shape == (2, 5, 16)
    packed = SpaceEncoder(space, 16, 4, 8, True)
    assert packed(torch.zeros(2, 5, 3)).shape == (2, 5, 16)  # cue (1) + pos (2), packed


def test_symbolic_images_encode_codes_as_categories_not_intensities():
    space = spaces.Box(0, 255, (5, 5, 3), np.uint8)  # minigrid's layout: (object, colour, state) per cell
    encoder = ImageEncoder(space, "hwc", "symbolic", embed_dim=4)
    ball, far = torch.zeros(1, 5, 5, 3, dtype=torch.uint8), torch.zeros(1, 5, 5, 3, dtype=torch.uint8)
    ball[0, 2, 2, 0], far[0, 2, 2, 0] = 6, 200
    before = encoder(far)
    with torch.no_grad():  # swap the object channel's rows for codes 6 and 200: only the rows tell codes apart
        rows = encoder.cells.embedding.weight
        rows[[6, 200]] = rows[[200, 6]].clone()
    torch.testing.assert_close(encoder(ball), before)
    key = ball.clone()
    key[0, 2, 2, 0] = 5
    assert (encoder(key) - encoder(ball)).abs().max() > 1e-3  # neighbouring codes are as distinct as any two
    with pytest.raises(ValueError, match='agent.image = "symbolic" needs a Box of non-negative bounded integers'):
        ImageEncoder(spaces.Box(0.0, 1.0, (5, 5, 3), np.float32), "hwc", "symbolic")


def test_the_minigrid_memory_config_starts_with_the_dead_actions_rare():
    """configs/minigrid_memory.toml: pickup, drop, toggle and done change nothing in Memory; its action_bias makes
    them rare in the untrained policy, and the three moves keep their share."""
    config = resolve(
        train_agent.CONFIG_DIR / train_agent.DEFAULT_PRESET, train_agent.CONFIG_DIR / "minigrid_memory.toml", SMALL
    )
    trainer = Trainer("MiniGrid-MemoryS7-v0", "lstm", config, CPU, seed=0)
    obs, _ = trainer.env.reset(seed=0)
    state = trainer.policy.initial_state(obs.shape[0], "cpu")
    with torch.no_grad():
        logits, _, _, _ = trainer.policy(obs[:, None], state, torch.ones(obs.shape[0], 1, dtype=torch.bool))
    probs = logits.softmax(-1).reshape(-1, 7)  # rows x actions
    assert (probs[:, 3:].sum(-1) < 0.05).all()
    assert (probs[:, :3] > 0.15).all()


def test_an_unknown_image_kind_stops_the_run(tmp_path, capsys):
    args = ["--env", "tests.tiny_envs:Tiny-image-v0", "--set", 'agent.image="rgb"', "--logdir", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        train_agent.main(args)
    assert stop.value.code == 2
    assert "agent.image must be one of pixels, symbolic, got 'rgb'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_multidiscrete_log_probs_are_the_components_summed():
    logits = torch.randn(2, 3, 5)  # N x T x (3 + 2)
    actions = torch.stack([torch.randint(0, 3, (2, 3)), torch.randint(0, 2, (2, 3))], dim=-1)  # N x T x K
    _, taken = action_log_probs(logits, actions, (3, 2))
    first = torch.log_softmax(logits[..., :3], -1).gather(-1, actions[..., :1]).squeeze(-1)
    second = torch.log_softmax(logits[..., 3:], -1).gather(-1, actions[..., 1:]).squeeze(-1)
    torch.testing.assert_close(taken, first + second)


def test_success_from_a_return_threshold_or_none():
    env = GymVectorEnv("CartPole-v1", 2, "cpu", gym_config())
    assert not env.reports_success
    env = GymVectorEnv("CartPole-v1", 2, "cpu", gym_config(success_from_return=True, success_return=5.0))
    env.reset(seed=0)
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(torch.zeros(2, dtype=torch.long))
        done = terminated | truncated
        assert torch.equal(info["success"], done & (info["episode_return"] >= 5.0))
    assert env.reports_success


def test_render_draws_the_envs_frames_beside_the_memory_strip(tmp_path):
    from runners import render

    args = ["--env", "tests.tiny_envs:Tiny-image-v0", "--model", "expire_span", "--steps", "32"]
    args += [*sum((["--set", s] for s in SMALL), []), "--set", "log.eval_episodes=0", "--logdir", str(tmp_path)]
    assert train_agent.main(args) == 0
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    out = tmp_path / "rollout.gif"
    assert render.main(["--checkpoint", str(checkpoint), "--episodes", "2", "--out", str(out)]) == 0
    frames = np.stack(list(__import__("imageio").v2.mimread(out)))
    assert frames.shape[0] >= 2 * 3  # two episodes of at least two steps, plus their first frames
