"""runners/train_agent.py and runners/render.py end to end: smoke runs, exact resume, checkpoints, bad input."""

import shutil

import imageio.v2 as imageio
import pytest
import torch

import memory_models
from agents.config_checks import check_agent_config
from agents.envs import ENV_IDS
from agents.trainer import model_options
from runners import render, summarize_runs, train_agent
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import resolve

TINY = [
    "--set", "train.num_envs=2",
    "--set", "ppo.minibatches=2",
    "--set", "train.unroll=5",
    "--set", "model.d_model=16",
    "--set", "model.n_heads=2",
    "--set", "log.every_updates=1",
    "--set", "log.eval_episodes=0",
    "--set", "train.compile_acting=false",  # compiling takes seconds; tested apart
]  # fmt: skip
SHORT_CORRIDOR = ["--set", "env.max_length=6", "--set", "env.max_steps=12"]
UPDATE = 2 * 5  # agent steps per update with TINY


def train(tmp_path, *args: str) -> dict:
    assert train_agent.main([*args, "--logdir", str(tmp_path)]) == 0
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    return load_checkpoint(checkpoint)


@pytest.mark.parametrize("model", memory_models.MODEL_NAMES)
def test_every_model_trains_on_corridor(tmp_path, model):
    payload = train(tmp_path, "--env", "corridor", "--model", model, "--steps", str(2 * UPDATE), *TINY, *SHORT_CORRIDOR)
    assert payload["updates"] == 2 and payload["model_name"] == model
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith(f"corridor-{model}-seed0-")
    assert list(run_dir.glob("events.out.tfevents.*"))


@pytest.mark.parametrize("env", ["portal", "instruction"])
def test_other_envs_train_with_the_default_model(tmp_path, env):
    payload = train(tmp_path, "--env", env, "--steps", str(UPDATE), *TINY)
    assert payload["updates"] == 1 and payload["model_name"] == "expire_span" and payload["env_name"] == env


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_the_quick_presets_compiled_acting_step_trains(tmp_path, capsys):
    compiled = ["--set", "train.compile_acting=true"]  # as in the preset; TINY turns it off
    payload = train(tmp_path, "--env", "corridor", "--steps", str(2 * UPDATE), *TINY, *SHORT_CORRIDOR, *compiled)
    assert payload["updates"] == 2
    assert "acting step: compiled" in capsys.readouterr().out


def test_resumed_run_continues_exactly_as_the_uninterrupted_run(tmp_path):
    common = ["--env", "corridor", "--seed", "3", *TINY, *SHORT_CORRIDOR]
    whole = train(tmp_path / "whole", *common, "--steps", str(4 * UPDATE))
    half = train(tmp_path / "half", *common, "--steps", str(2 * UPDATE))
    assert half["updates"] == 2
    (checkpoint,) = (tmp_path / "half").glob("*/checkpoint.pt")
    assert train_agent.main(["--resume", str(checkpoint), "--steps", str(4 * UPDATE)]) == 0
    resumed = load_checkpoint(checkpoint)
    assert resumed["updates"] == whole["updates"] == 4
    for name, value in whole["policy"].items():
        assert torch.equal(value, resumed["policy"][name]), name
    whole_env, resumed_env = whole["ranks"][0]["env"], resumed["ranks"][0]["env"]
    assert torch.equal(whole_env["generator"], resumed_env["generator"])
    for table in ("tensors", "layouts"):
        for key, value in whole_env[table].items():
            assert torch.equal(value, resumed_env[table][key]), key
    assert torch.equal(whole["ranks"][0]["carry"]["obs"], resumed["ranks"][0]["carry"]["obs"])


def test_a_checkpoint_older_than_a_preset_key_resumes_and_renders_as_it_ran(tmp_path):
    """A key added to the presets after a run was saved takes the preset's value, the former behaviour: the
    resume equals the uninterrupted run's, as for a checkpoint that has the key."""
    common = ["--env", "corridor", "--seed", "1", *TINY, *SHORT_CORRIDOR]
    whole = train(tmp_path / "whole", *common, "--steps", str(3 * UPDATE))
    train(tmp_path / "old", *common, "--steps", str(2 * UPDATE))
    (checkpoint,) = (tmp_path / "old").glob("*/checkpoint.pt")
    payload = load_checkpoint(checkpoint)
    for table, key in (("agent", "actor_init_scale"), ("train", "entropy_cost_decay")):
        del payload["config"][table][key]  # as written before these keys existed
    save_checkpoint(checkpoint, payload)
    assert train_agent.main(["--resume", str(checkpoint), "--steps", str(3 * UPDATE)]) == 0
    resumed = load_checkpoint(checkpoint)
    for name, value in whole["policy"].items():
        assert torch.equal(value, resumed["policy"][name]), name
    out = tmp_path / "old.gif"
    assert render.main(["--checkpoint", str(checkpoint), "--episodes", "1", "--out", str(out)]) == 0


def test_checkpoint_holds_everything_a_resume_needs(tmp_path):
    payload = train(tmp_path, "--env", "corridor", "--model", "lstm", "--steps", str(3 * UPDATE), *TINY)
    assert payload["global_step"] == 3 * UPDATE and payload["updates"] == 3
    assert payload["config"]["train"]["num_envs"] == 2 and payload["world_size"] == 1
    assert payload["optimizer"]["state"], "the optimiser's moments are saved"
    rank = payload["ranks"][0]
    assert set(rank) == {"env", "carry", "rng", "stats", "curriculum"}
    assert set(rank["rng"]) >= {"python", "numpy", "torch"}
    assert rank["carry"]["obs"].shape[0] == 2 and rank["carry"]["state"].hidden.shape == (2, 2, 16)
    assert "generator" in rank["env"]


def test_eval_mode_reports_held_out_success_and_is_repeatable(tmp_path, capsys):
    train(tmp_path, "--env", "corridor", "--model", "lstm", "--steps", str(UPDATE), *TINY, *SHORT_CORRIDOR)
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    capsys.readouterr()
    outputs = []
    for _ in range(2):
        assert train_agent.main(["--resume", str(checkpoint), "--eval", "8"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("held-out evaluation (8 episodes): sampled success ")


def test_render_writes_a_gif_of_grid_and_memory_strip(tmp_path):
    train(tmp_path, "--env", "corridor", "--steps", str(UPDATE), *TINY, *SHORT_CORRIDOR)
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    out = tmp_path / "rollout.gif"
    assert render.main(["--checkpoint", str(checkpoint), "--episodes", "2", "--out", str(out)]) == 0
    frames = imageio.mimread(out)
    assert len(frames) >= 4 and frames[0].shape[1] >= 512


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "corridr"], "unknown env 'corridr': neither one of this project's tasks"),
        (["--env", "corridor", "--model", "expire"], "choose from 'none', 'lstm'"),
        (["--env", "corridor", "--set", "train.foo=1"], "unknown config key 'train.foo'; valid keys here: algorithm"),
        (["--env", "corridor", "--set", "train.optimizer=sgd"], "train.optimizer must be one of adam, rmsprop"),
        (["--env", "corridor", "--set", "train.lr=fast"], "train.lr must be float"),
        (["--env", "corridor", "--set", "model.expire_span.max_span=0"], "max_span and ramp must be at least 1"),
        (["--env", "corridor", "--set", "env.max_length=2"], "max_length must be an integer in [3,"),
        (["--env", "CartPole-v1", "--set", "env.foo=1"], "CartPole-v1 does not take the [env] arguments foo"),
        (["--env", "corridor", "--steps", "0"], "--steps must be at least 1"),
        (["--env", "corridor", "--device", "tpu"], "unknown device 'tpu'"),
        (["--env", "corridor", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
        (["--resume", "missing.pt"], "checkpoint 'missing.pt' does not exist"),
        (["--model", "lstm"], "--env is required"),
    ],
)
def test_bad_input_stops_at_once_naming_it_and_writes_nothing(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        train_agent.main([*args, "--logdir", str(tmp_path / "runs")])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "env, config",
    [(env, path.name) for env in ENV_IDS for path in sorted(train_agent.CONFIG_DIR.glob(f"{env}*.toml"))],
)
def test_shipped_configs_fit_their_env_preset(env, config):
    settings = resolve(train_agent.preset_path(env), train_agent.CONFIG_DIR / config)
    for model in memory_models.MODEL_NAMES:
        check_agent_config(settings, model_options(model, settings["model"]))


def test_render_rejects_unknown_formats(tmp_path, capsys):
    with pytest.raises(SystemExit):
        render.main(["--checkpoint", "x.pt", "--out", str(tmp_path / "a.avi")])
    assert "--out must end in one of .gif, .mp4" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_with_bf16(tmp_path):
    payload = train(
        tmp_path, "--env", "corridor", "--device", "cuda", "--steps", str(2 * UPDATE), "--set", "train.bf16=true", *TINY
    )
    assert payload["updates"] == 2


def test_summarize_runs_tabulates_a_run(tmp_path, capsys):
    args = ["--env", "corridor", "--model", "lstm", "--seed", "4", "--steps", str(3 * UPDATE), *TINY]
    train(tmp_path, *args, *SHORT_CORRIDOR, "--set", "train.algorithm=ppo", "--set", "ppo.minibatches=2")
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()
    assert summarize_runs.main([str(run_dir), "--level", "0.01"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    assert row[0] == f"| {run_dir.name}" and row[1:4] == ["ppo", "4", "30"]


def test_summarize_runs_counts_a_logged_success_equal_to_the_level(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from runners.plot_curves import read_events

    with SummaryWriter(tmp_path) as writer:  # 0.9 is stored as float32 0.89999998
        for step, value in ((100, 0.5), (200, 0.9), (300, 1.0)):
            writer.add_scalar("eval/success_greedy", value, step)
    steps, values, _ = read_events(tmp_path, ["eval/success_greedy"])["eval/success_greedy"]
    assert summarize_runs.first_reaching(steps, values, 0.9) == 1
    assert summarize_runs.first_reaching(steps, values, 0.95) == 2
    assert summarize_runs.first_reaching(steps, values, 1.0) == 2
