"""Runs fail loudly and never lose or corrupt work (issue 15): divergence stops, checkpoints load as data only,
run directories are never shared, bad input is one line before anything is written, resumed logs are exact."""

import errno
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import memory_models
from runners import bench_models, plot_curves, render, train_agent, train_lm
from tests.test_agent_runner import SHORT_CORRIDOR, TINY, UPDATE
from training.checkpoint import (
    CheckpointError,
    DiskFullError,
    load_checkpoint,
    memory_state_classes,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from training.paths import create_run_directory
from training.strict_json import dumps

ROOT = Path(__file__).resolve().parents[1]
AGENT_TINY = [*TINY, *SHORT_CORRIDOR]
LM_TINY = [
    "--set", "model.d_model=16",
    "--set", "model.n_heads=2",
    "--set", "training.batch_size=2",
    "--set", "training.block=16",
    "--set", "training.steps=2",
    "--set", "training.log_every=1",
    "--set", "training.eval_every=0",
    "--set", "training.eval_blocks=2",
    "--set", "training.checkpoint_every=0",
    "--set", "data.min_distance=4",
    "--set", "data.distance=8",
]  # fmt: skip


def lm_args(logdir: Path, *extra: str, model: str = "lstm") -> list[str]:
    return ["--task", "copy", "--model", model, "--device", "cpu", "--logdir", str(logdir), *LM_TINY, *extra]


def run_command(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def error_line(stderr: str) -> str:
    """The one line of ``stderr`` with the error message (a progress bar may be redrawn around it)."""
    lines = stderr.replace("\r", "\n").splitlines()
    (line,) = [line[line.index("error: ") :] for line in lines if "error: " in line]
    return line


@pytest.fixture(scope="module")
def agent_checkpoint(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("agent")
    assert train_agent.main(["--env", "corridor", "--model", "lstm", "--steps", str(UPDATE), *AGENT_TINY,
                             "--logdir", str(logdir)]) == 0  # fmt: skip
    (checkpoint,) = logdir.glob("*/checkpoint.pt")
    return checkpoint


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("lm") / "run"
    train_lm.main(lm_args(logdir))
    return logdir / "checkpoint.pt"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, agent_checkpoint, lm_checkpoint) -> dict[str, Path]:
    """Files that are not a checkpoint of the runner reading them, by what is wrong with them."""
    folder = tmp_path_factory.mktemp("bad")
    whole = agent_checkpoint.read_bytes()
    files = {name: folder / f"{name}.pt" for name in ("truncated", "empty", "text", "code", "other_model")}
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("step = 3\nthese are notes, not weights\n")
    code = "import os, torch\nclass Evil:\n    def __reduce__(self):\n"
    code += f"        return (os.system, ('touch {folder}/pwned',))\n"
    code += f"torch.save({{'env_name': 'corridor', 'policy': Evil()}}, {str(files['code'])!r})\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, files["other_model"])
    files["directory"] = folder / "a_directory.pt"
    files["directory"].mkdir()
    return files


# ----- divergence ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lstm", "expire_span"])
def test_agent_divergence_stops_naming_step_value_and_cause_and_keeps_the_good_checkpoint(tmp_path, capsys, model):
    args = ["--env", "corridor", "--model", model, "--steps", str(20 * UPDATE), *AGENT_TINY, "--logdir", str(tmp_path)]
    args += ["--set", "train.lr=1e30", "--set", "log.checkpoint_every_updates=1", "--set", "train.algorithm=a2c"]
    assert train_agent.main(args) == 1
    message = error_line(capsys.readouterr().err)
    assert message.startswith("error: training diverged at step ") and "= nan" in message
    assert "train.lr = 1e+30" in message and "train.grad_clip" in message and "was not overwritten" in message
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    payload = load_checkpoint(checkpoint)
    diverged_at = int(message.split("step ")[1].split(":")[0])
    assert payload["global_step"] == diverged_at - UPDATE  # the save after the last finite update
    assert all(torch.isfinite(value).all() for value in payload["policy"].values())


def test_lm_divergence_exits_non_zero_with_a_message_and_writes_no_nan(tmp_path):
    logdir = tmp_path / "run"
    args = lm_args(logdir, "--set", "training.lr=1e30", "--set", "training.steps=20", "--set", "training.warmup=1")
    result = run_command("runners/train_lm.py", *args, "--set", "training.checkpoint_every=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = error_line(result.stderr)
    assert message.startswith("error: training diverged at step ") and "training.lr = 1e+30" in message
    assert not (logdir / "summary.json").exists()
    checkpoint = load_checkpoint(logdir / "checkpoint.pt")
    assert checkpoint["step"] == int(message.split("step ")[1].split(":")[0]) - 1
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


def test_metrics_files_are_strict_json_with_null_for_what_was_not_scored(tmp_path, capsys):
    assert json.loads(dumps({"loss": float("nan"), "size": [1.0, float("inf")]})) == {"loss": None, "size": [1.0, None]}
    collision = ["--task", "collision", "--model", "lstm", "--device", "cpu", "--logdir", str(tmp_path / "run")]
    summary = train_lm.main([*collision, *LM_TINY[:-4], "--set", "data.grid=4"])  # its valid split scores from block 6
    assert summary["valid"] == {"loss": None, "error": None}  # not loss 0.0 and error 100%
    assert "the valid evaluation scored no position; raise training.eval_blocks" in capsys.readouterr().err

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    written = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=no_constants)
    assert written["valid"]["error"] is None and written["test"]["loss"] > 0


# ----- checkpoints are data; other files are one line ---------------------------------------------------------------


def test_checkpoints_load_with_weights_only_and_rng_states_round_trip(tmp_path, agent_checkpoint, lm_checkpoint):
    with torch.serialization.safe_globals(memory_state_classes()):
        for path in (agent_checkpoint, lm_checkpoint):
            assert torch.load(path, weights_only=True)["config"]
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": rng_states()})
    first = (random.random(), np.random.rand(3).tolist(), np.random.randint(1 << 30), torch.rand(2).tolist())
    restore_rng_states(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), np.random.randint(1 << 30), torch.rand(2).tolist()) == first


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated", "is not a checkpoint: not a file written by torch.save (or a truncated one)"),
        ("empty", "is an empty file, not a checkpoint"),
        ("text", "is not a checkpoint: not a file written by torch.save"),
        ("code", "holds more than tensors and plain data (posix.system), so it is not loaded"),
        ("other_model", "is a file of 1 entries (state_dict) that no runner of this project wrote"),
        ("directory", "is a directory, not a checkpoint file"),
        ("lm", "is a train_lm.py checkpoint (copy, lstm), not a train_agent.py checkpoint"),
    ],
)
def test_agent_commands_name_what_a_bad_checkpoint_is_in_one_line(capsys, bad_files, lm_checkpoint, name, message):
    path = lm_checkpoint if name == "lm" else bad_files[name]
    for command, args in ((train_agent, ["--resume", str(path)]), (render, ["--checkpoint", str(path)])):
        with pytest.raises(SystemExit) as stop:
            command.main(args)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and str(path) in err[-1], command
    assert not (path.parent / "pwned").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated", "not a file written by torch.save (or a truncated one)"),
        ("code", "holds more than tensors and plain data (posix.system)"),
        ("agent", "is a train_agent.py checkpoint (corridor, lstm), not a train_lm.py checkpoint"),
        ("other_model", "that no runner of this project wrote"),
    ],
)
def test_lm_resume_names_what_a_bad_checkpoint_is(tmp_path, bad_files, agent_checkpoint, name, message):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "checkpoint.pt").write_bytes((agent_checkpoint if name == "agent" else bad_files[name]).read_bytes())
    with pytest.raises(CheckpointError) as error:
        train_lm.main(lm_args(logdir, "--resume"))
    assert message in str(error.value) and str(logdir / "checkpoint.pt") in str(error.value)
    assert not (bad_files["code"].parent / "pwned").exists()


def test_lm_resume_with_another_model_or_task_says_which_wrote_it(tmp_path, lm_checkpoint):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "checkpoint.pt").write_bytes(lm_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="is a --task copy --model lstm checkpoint; resume it with those, not "
                                              "--task copy --model transformer_xl"):  # fmt: skip
        train_lm.main(lm_args(logdir, "--resume", model="transformer_xl"))


@pytest.mark.parametrize("command", ["train_agent", "render", "train_lm"])
def test_a_checkpoint_holding_code_runs_nothing_and_the_command_ends_in_one_line(tmp_path, bad_files, command):
    marker = bad_files["code"].parent / "pwned"
    if command == "train_lm":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoint.pt").write_bytes(bad_files["code"].read_bytes())
        result = run_command("runners/train_lm.py", *lm_args(tmp_path / "run", "--resume"))
    else:
        flag = "--resume" if command == "train_agent" else "--checkpoint"
        result = run_command(f"runners/{command}.py", flag, str(bad_files["code"]))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds more than tensors and plain data (posix.system)" in error_line(result.stderr)
    assert not marker.exists()


# ----- run directories ----------------------------------------------------------------------------------------------


def test_two_agent_runs_started_at_once_into_one_logdir_get_a_directory_each(tmp_path):
    args = ["runners/train_agent.py", "--env", "corridor", "--model", "lstm", "--steps", str(2 * UPDATE), *AGENT_TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen([sys.executable, *args, "--logdir", str(tmp_path)], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr.decode()[-2000:]
    run_dirs = sorted(tmp_path.iterdir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        assert load_checkpoint(run_dir / "checkpoint.pt")["updates"] == 2


def test_two_lm_runs_started_at_once_into_one_logdir_get_a_directory_each(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logdir = tmp_path / "copy-lstm"
    runs = [
        subprocess.Popen([sys.executable, "runners/train_lm.py", *lm_args(logdir, "--seed", str(seed))], cwd=ROOT,
                         env=env, stderr=subprocess.PIPE)
        for seed in (0, 1)
    ]  # fmt: skip
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr.decode()[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy-lstm", "copy-lstm-2"]
    seeds = set()
    for run_dir in tmp_path.iterdir():
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
        seeds.add(checkpoint["ranks"][0]["stream"]["rng"]["state"]["state"])
        assert json.loads((run_dir / "summary.json").read_text())["step"] == 2
    assert len(seeds) == 2  # each directory holds one run's data, not a mix


def test_a_taken_run_directory_name_moves_on_to_the_next(tmp_path):
    assert create_run_directory(tmp_path, "run") == tmp_path / "run"
    assert create_run_directory(tmp_path, "run") == tmp_path / "run-2"
    (tmp_path / "run-3").write_text("a file takes the name too")
    assert create_run_directory(tmp_path, "run") == tmp_path / "run-4"


# ----- bad values and paths: one line, nothing written --------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "log.every_updates=0"], "log.every_updates must be at least 1"),
        (["--set", "log.checkpoint_every_updates=0"], "log.checkpoint_every_updates must be at least 1"),
        (["--set", "log.eval_every_updates=0"], "log.eval_every_updates must be at least 1"),
        (["--set", "model.n_layers=0"], "n_layers must be an integer of at least 1, got 0"),
        (["--set", "model.n_heads=0"], "n_heads must be an integer of at least 1, got 0"),
        (["--set", "model.dropout=0.5"], "model.dropout must be 0 for an agent, got 0.5"),
        (["--set", "agent.embed_dim=0"], "agent.embed_dim must be at least 1, got 0"),
        (
            ["--set", "agent.actor_init_scale=0.0"],
            "agent.actor_init_scale must be above 0 (it scales the actor's initial weights), got 0.0",
        ),
        (["--set", "train.entropy_cost=-5.0"], "train.entropy_cost must be 0 or more"),
        (["--set", "train.lr=nan"], "train.lr must be a finite number, got nan"),
        (["--config", "CONFIG_DIR"], "is a directory; give the path of a .toml file"),
        (["--config", "BINARY"], "is not a text (UTF-8) TOML file: byte 1 cannot be decoded"),
        (["--logdir", "A_FILE/runs"], "lies under"),
    ],
)
def test_agent_bad_values_and_paths_stop_before_anything_is_written(tmp_path, capsys, a_file, args, message):
    binary = tmp_path / "config.toml"
    binary.write_bytes(b"\x00\xff\xfe binary")
    names = {"CONFIG_DIR": str(tmp_path), "BINARY": str(binary), "A_FILE/runs": str(a_file / "runs")}
    args = [names.get(arg, arg) for arg in args]
    logdir = ["--logdir", str(tmp_path / "runs")] if "--logdir" not in args else []
    with pytest.raises(SystemExit) as stop:
        train_agent.main(["--env", "corridor", *AGENT_TINY, *args, *logdir])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and a_file.is_file()


def test_an_unwritable_logdir_is_one_line(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # a folder this user may not write in (a test running as root may write anywhere, so os.access says so)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(SystemExit):
        train_agent.main(["--env", "corridor", *AGENT_TINY, "--logdir", str(locked / "runs")])
    assert f"--logdir '{locked / 'runs'}': no permission to write in '{locked}'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no permission to write in"):
        train_lm.main(lm_args(locked / "run"))
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "model.n_layers=0"], "n_layers must be an integer of at least 1, got 0"),
        (["--set", "model.n_heads=0"], "n_heads must be an integer of at least 1, got 0"),
        (["--set", "training.lr=-1.0"], "training.lr must be positive"),
        (["--set", "training.checkpoint_every=-1"], "training.checkpoint_every must be 0 or more"),
    ],
)
def test_lm_bad_values_stop_before_anything_is_written(tmp_path, args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        train_lm.main(lm_args(tmp_path / "run", *args))
    assert not (tmp_path / "run").exists()


def test_lm_bad_paths_and_tiny_files_get_one_line(tmp_path, a_file):
    result = run_command("runners/train_lm.py", *lm_args(a_file / "run"))
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: --logdir '{a_file / 'run'}' lies under '{a_file}', which is a file, not a directory"
    ]
    tiny = tmp_path / "tiny.txt"
    tiny.write_bytes(b"ten bytes!")
    text = ["--task", "text", "--model", "lstm", "--data", str(tiny), "--logdir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="the data has 10 bytes: data.valid_fraction 0.05 and data.test_fraction 0.05 "
                                         "of it leave 0 and 0 bytes; use a larger file"):  # fmt: skip
        train_lm.main(text)
    assert not (tmp_path / "run").exists()


def test_render_checks_out_before_playing(tmp_path, capsys, agent_checkpoint, a_file):
    for out, message in [
        (a_file / "rollout.gif", "which is a file, not a directory"),
        (tmp_path, "is a directory; give a file name"),
        (tmp_path / "rollout.avi", "--out must end in one of .gif, .mp4"),
    ]:
        if out == tmp_path:
            out = tmp_path / "folder.gif"
            out.mkdir()
        with pytest.raises(SystemExit) as stop:
            render.main(["--checkpoint", str(agent_checkpoint), "--out", str(out)])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_plot_curves_and_bench_models_reject_bad_options_in_one_line(tmp_path, capsys, a_file):
    for out, message in [
        (tmp_path / "c.xyz", "--out must end in one of "),
        (a_file / "c.png", "which is a file, not a directory"),
    ]:
        with pytest.raises(SystemExit) as stop:
            plot_curves.main([str(tmp_path), "--out", str(out)])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        bench_models.parse_args(["--d-model", "63"])
    assert stop.value.code == 2 and "--d-model (63) must be divisible by --n-heads (4)" in capsys.readouterr().err


def test_plot_curves_draws_the_tags_asked_for_and_names_those_no_run_logged(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    with SummaryWriter(run) as writer:
        for step in range(3):
            writer.add_scalar("curriculum/stage", step, step)
            writer.add_scalar("eval/success_greedy", step / 2, step)
    out = tmp_path / "curves.png"
    assert plot_curves.main([str(run), "--tags", "curriculum/stage", "eval/success_greedy", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    with pytest.raises(SystemExit) as stop:
        plot_curves.main([str(run), "--tags", "curriculum/stage", "episode/nothing", "--out", str(out)])
    assert stop.value.code == 2 and "no run logged episode/nothing" in capsys.readouterr().err


def test_agent_resume_below_the_checkpoints_step_is_an_error(capsys, agent_checkpoint):
    with pytest.raises(SystemExit) as stop:
        train_agent.main(["--resume", str(agent_checkpoint), "--steps", str(UPDATE - 1)])
    assert stop.value.code == 2
    assert f"--steps {UPDATE - 1} is below the checkpoint's step {UPDATE}" in capsys.readouterr().err


def test_lm_resume_below_the_checkpoints_step_is_an_error(tmp_path, lm_checkpoint):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "checkpoint.pt").write_bytes(lm_checkpoint.read_bytes())
    with pytest.raises(ValueError, match="--steps 1 is below the checkpoint's step 2"):
        train_lm.main(lm_args(logdir, "--resume", "--steps", "1"))


# ----- a full disk, and temp files of crashed saves -----------------------------------------------------------------


def test_a_full_disk_says_so_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    real_fsync, saves = os.fsync, []

    def fsync_on_a_full_disk(fd):
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            saves.append(fd)
            if len(saves) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_on_a_full_disk)
    args = ["--env", "corridor", "--model", "lstm", "--steps", str(3 * UPDATE), *AGENT_TINY, "--logdir", str(tmp_path)]
    assert train_agent.main([*args, "--set", "log.checkpoint_every_updates=1"]) == 1
    message = error_line(capsys.readouterr().err)
    assert message.startswith("error: no space left on the disk for checkpoint ") and "is kept" in message
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in run_dir.glob("*.pt*")] == ["checkpoint.pt"]  # the failed save's temp file is gone
    assert load_checkpoint(run_dir / "checkpoint.pt")["updates"] == 1


def test_save_checkpoint_on_a_full_disk_raises_disk_full(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match="no space left on the disk .* the last good checkpoint .* is kept"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_saves_and_resumes_remove_temp_files_that_crashed_saves_left(tmp_path, agent_checkpoint):
    path = tmp_path / "checkpoint.pt"
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"x" * 1000)  # what kill -9 mid-save leaves
    (tmp_path / ".other.pt.abc123.tmp").write_bytes(b"not ours")
    save_checkpoint(path, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abc123.tmp", "checkpoint.pt"]

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(agent_checkpoint.read_bytes())
    (run_dir / ".checkpoint.pt.k9ll3d.tmp").write_bytes(b"x" * 1000)
    assert train_agent.main(["--resume", str(run_dir / "checkpoint.pt"), "--steps", str(UPDATE)]) == 0
    assert not list(run_dir.glob("*.tmp"))


# ----- exact logs across a resume -----------------------------------------------------------------------------------


def scalars(run_dir: Path, skip: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard's own reading of a run directory's scalars, every event file of it together."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = [tag for tag in events.Tags()["scalars"] if not tag.startswith(skip)]
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}


def crash_on_second_save(monkeypatch, module, log_function: str) -> None:
    """Make ``module``'s run flush its TensorBoard events at every log (as a long run does) and die like kill -9
    at its second checkpoint, after logging steps past the first one."""
    real_save, real_log, calls = module.save, getattr(module, log_function), []

    def save(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(*args)

    def log(writer, *args):
        real_log(writer, *args)
        writer.flush()

    monkeypatch.setattr(module, "save", save)
    monkeypatch.setattr(module, log_function, log)


def test_agent_resumed_tensorboard_scalars_equal_the_uninterrupted_runs(tmp_path, monkeypatch):
    # Checkpoints at updates 3, 6, 9 and logs at 5 and 10: the checkpoint at 3 holds the episodes that the 12-step
    # time limit ended in update 3, not logged yet; the run dies at its checkpoint at 6, after logging update 5.
    update = 4 * 5  # agent steps per update with 4 envs
    common = ["--env", "corridor", "--model", "lstm", "--steps", str(10 * update), *AGENT_TINY]
    common += ["--set", "train.num_envs=4", "--set", "log.every_updates=5", "--set", "log.checkpoint_every_updates=3"]
    assert train_agent.main([*common, "--logdir", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as patch:
        crash_on_second_save(patch, train_agent, "log_scalars")
        with pytest.raises(KeyboardInterrupt):
            train_agent.main([*common, "--logdir", str(tmp_path / "split")])
    (checkpoint,) = (tmp_path / "split").glob("*/checkpoint.pt")
    payload = load_checkpoint(checkpoint)
    assert payload["updates"] == 3 and payload["ranks"][0]["stats"]["episodes"].sum() > 0  # mid-interval episodes
    time.sleep(1.1)  # a new second: the resumed run's event file sorts after the first one's, as between real runs
    assert train_agent.main(["--resume", str(checkpoint)]) == 0
    (whole_dir,) = (tmp_path / "whole").iterdir()
    whole, resumed = (scalars(d, skip=("speed/",)) for d in (whole_dir, checkpoint.parent))
    assert "episode/success" in whole and whole == resumed
    assert [step for step, _ in resumed["loss/total"]] == [5 * update, 10 * update]  # each logged step once


def test_lm_resumed_tensorboard_scalars_equal_the_uninterrupted_runs(tmp_path, monkeypatch):
    common = ["--set", "training.steps=6", "--set", "training.log_every=3", "--set", "training.checkpoint_every=2"]
    train_lm.main(lm_args(tmp_path / "whole", *common, model="expire_span"))
    with monkeypatch.context() as patch:
        crash_on_second_save(patch, train_lm, "log_interval")
        with pytest.raises(KeyboardInterrupt):
            train_lm.main(lm_args(tmp_path / "split", *common, model="expire_span"))
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 2
    time.sleep(1.1)  # a new second: the resumed run's event file sorts after the first one's, as between real runs
    train_lm.main(lm_args(tmp_path / "split", *common, "--resume", model="expire_span"))
    whole, resumed = (scalars(tmp_path / name, skip=("perf/",)) for name in ("whole", "split"))
    assert "train/loss" in whole and "memory/size_layer0" in whole and whole == resumed
    assert [step for step, _ in resumed["train/loss"]] == [3, 6]


def test_every_memory_state_class_is_allowed_in_checkpoints():
    allowed = set(memory_state_classes())
    for name in memory_models.MODEL_NAMES:
        model = memory_models.build(name, d_model=16, n_heads=2)
        assert type(model.initial_state(1, "cpu")) in allowed, name
