"""runners/study.py: study files, a tiny study end to end (run, skip, resume, a failing cell, the report files),
and the statistics against values worked out by hand."""

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents.envs import is_task
from runners import study as study_runner
from studies.cell import LOG_NAME, RESULT_NAME, held_out_results, last_error_line, training_curves
from studies.spec import load_study
from training.checkpoint import load_checkpoint
from training.config import ConfigError

needs_rliable = pytest.mark.skipif(importlib.util.find_spec("rliable") is None, reason="needs the study extra")
needs_peer = pytest.mark.skipif(importlib.util.find_spec("sb3_contrib") is None, reason="needs the bench extra")

TINY = [
    "train.num_envs=2", "ppo.minibatches=2", "train.unroll=10", "model.d_model=16", "model.n_heads=2",
    "log.every_updates=1", "train.compile_acting=false", "env.max_length=6", "env.max_steps=12",
]  # fmt: skip
UPDATE = 2 * 10  # agent steps per update


def write_study(path: Path, steps: int, models: str, seeds: str = "[0]") -> Path:
    sets = ", ".join(f'"{item}"' for item in TINY)
    path.write_text(
        f'[study]\ntask = "corridor"\nsteps = {steps}\nseeds = {seeds}\neval_episodes = 4\nmemory_window = 0.5\n'
        f"set = [{sets}]\n\n{models}",
        encoding="utf-8",
    )
    return path


TINY_MODELS = """
[models.transformer_xl]
param = "model.transformer_xl.mem_len"
values = [4, 8]

[models.expire_span]
param = "model.expire_span.max_span"
values = [-1]  # passes the schema (an int), fails when the model is built: the failing cell
"""


def commands(cell_dir: Path) -> list[str]:
    """The train_agent.py commands a cell has run, from its log."""
    return [line for line in (cell_dir / LOG_NAME).read_text().splitlines() if line.startswith("$ ")]


def test_shipped_study_files_load_and_fit_their_presets():
    for path in sorted(Path("configs/studies").glob("*.toml")):
        study = load_study(path)
        assert study.cells, path
        models = {cell.model for cell in study.cells}
        for model in models:
            assert {cell.seed for cell in study.cells if cell.model == model} == set(study.seeds)
        if not all(is_task(task) for task in study.tasks):
            continue  # a benchmark of outside envs (POPGym, minigrid): one setting per model
        assert {"expire_span", "transformer_xl"} <= models, path  # Figure 4 of a task
        for model in models:
            settings = {cell.setting for cell in study.cells if cell.model == model}
            assert len(settings) >= 3 or model == "expire_span", (path, model)


def test_a_cell_per_model_setting_and_seed_with_its_overrides(tmp_path):
    models = """
[models.compressive]
param = ["model.compressive.mem_len", "model.compressive.cmem_len"]
values = [[16, 8], [32, 16]]
set = ["model.compressive.compression_rate=3"]

[models.lstm]
"""
    study = load_study(write_study(tmp_path / "s.toml", 100, models, seeds="[0, 5]"))
    names = [cell.name for cell in study.cells]
    assert names == [
        "corridor-compressive-mem_len16-cmem_len8-seed0",
        "corridor-compressive-mem_len16-cmem_len8-seed5",
        "corridor-compressive-mem_len32-cmem_len16-seed0",
        "corridor-compressive-mem_len32-cmem_len16-seed5",
        "corridor-lstm-seed0",
        "corridor-lstm-seed5",
    ]
    first = study.cells[0]
    assert first.setting_label == "mem_len=16,cmem_len=8" and study.cells[-1].setting_label == "-"
    assert first.overrides[-3:] == (
        "model.compressive.compression_rate=3",
        "model.compressive.mem_len=16",
        "model.compressive.cmem_len=8",
    )


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ('[models.gpt]\nparam = "model.gpt.x"\nvalues = [1]\n', "unknown model"),
        ('[models.transformer_xl]\nparam = "model.transformer_xl.mem_lenn"\nvalues = [1]\n', "mem_lenn"),
        ('[models.transformer_xl]\nparam = "model.transformer_xl.mem_len"\nvalues = [1.5]\n', "must be int"),
        ('[models.compressive]\nparam = ["model.compressive.mem_len", "model.compressive.cmem_len"]\n'
         "values = [[4]]\n", "one per param"),
        ('[models.transformer_xl]\nparam = "model.transformer_xl.mem_len"\nvalues = [4, 4]\n', "share a name"),
    ],
)  # fmt: skip
def test_a_bad_study_file_stops_before_any_cell_runs(tmp_path, models, message):
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path / "s.toml", 100, models))


def test_tasks_may_be_several_gymnasium_ids_with_the_peer_beside_the_models(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[study]\ntasks = ["CartPole-v1", "corridor"]\nsteps = 100\nseeds = [0, 1]\n\n'
        "[models.none]\n[models.recurrent_ppo]\n",
        encoding="utf-8",
    )
    study = load_study(path)
    assert study.tasks == ("CartPole-v1", "corridor")
    assert [cell.name for cell in study.cells] == [
        f"{task}-{model}-seed{seed}"
        for task in ("CartPole-v1", "corridor")
        for model in ("none", "recurrent_ppo")
        for seed in (0, 1)
    ]


@pytest.mark.parametrize(
    ("head", "models", "message"),
    [
        ('task = "NoSuchEnv-v9"', "[models.none]\n", "NoSuchEnv-v9"),
        ('tasks = ["corridor", "nosuchmodule:Env-v0"]', "[models.none]\n", "nosuchmodule"),
        ('task = "corridor"\ntasks = ["portal"]', "[models.none]\n", "task or tasks"),
        ('tasks = ["corridor", "corridor"]', "[models.none]\n", "repeats"),
        ('task = "corridor"', '[models.recurrent_ppo]\nparam = "model.d_model"\nvalues = [8]\n', "no param"),
        ('task = "instruction"', "[models.recurrent_ppo]\n", "does not follow a curriculum"),
    ],
)
def test_a_bad_task_or_peer_stops_the_study_at_load(tmp_path, head, models, message):
    path = tmp_path / "s.toml"
    path.write_text(f"[study]\n{head}\nsteps = 100\n\n{models}", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_held_out_results_are_read_with_or_without_a_success_measure():
    with_success = (
        "held-out evaluation (8 episodes): sampled success 62.5%, return 0.625, length 20.0; "
        "greedy success 100.0%, return 1.000, length 16.0; checkpoint x"
    )
    assert held_out_results(with_success) == {
        "episodes": 8.0, "success": 0.625, "return": 0.625, "length": 20.0,
        "success_greedy": 1.0, "return_greedy": 1.0, "length_greedy": 16.0,
    }  # fmt: skip
    returns_only = (
        "held-out evaluation (4 episodes): sampled return -0.250, length 51.0; greedy return 0.500, length 50.5"
    )
    assert held_out_results(returns_only) == {
        "episodes": 4.0, "return": -0.25, "length": 51.0, "return_greedy": 0.5, "length_greedy": 50.5,
    }  # fmt: skip


def test_mmer_is_the_best_logged_mean_return_with_a_resume_replacing_the_steps_past_its_checkpoint(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for run, points in (("a", [(10, 0.1), (20, 0.9), (30, 0.3)]), ("b", [(20, 0.2), (30, 0.4)])):
        writer = SummaryWriter(str(tmp_path), filename_suffix=run)  # b: resumed at step 10, relogs 20 and 30
        for step, value in points:
            writer.add_scalar("episode/return", value, step)
            writer.add_scalar("memory/size_layer0", 100 * value, step)
        writer.close()
        time.sleep(1.1)  # event files are read in the order of their names, which hold the second
    layers, mmer = training_curves(tmp_path, window=0.5)
    assert mmer == pytest.approx(0.4)  # the 0.9 at step 20 was replaced by the resumed run's 0.2
    assert layers == pytest.approx([30.0])  # steps 20 and 30 of the last half: (20 + 40) / 2
    (tmp_path / "empty").mkdir()
    assert training_curves(tmp_path / "empty", window=0.5) == ([], None)  # a run that logged nothing


def test_the_error_line_is_the_last_thing_printed_past_progress_bar_redraws():
    text = "acting step: eager\n 10%|#  | 1/10\r 20%|## | 2/10\nerror: loss is nan at step 40\n\n"
    assert last_error_line(text) == "error: loss is nan at step 40"


@needs_rliable
def test_iqm_and_interval_match_values_worked_out_by_hand():
    from studies.report import interval_estimates

    # IQM = mean of the middle half: of 8 sorted values drop 2 at each end, (2 + 3 + 4 + 5) / 4 = 3.5,
    # whatever the outlier 100; of 4 values drop 1 at each end, (0.2 + 0.3) / 2 = 0.25.
    assert interval_estimates(np.array([100, 0, 1, 2, 3, 4, 5, 6]), reps=200).iqm == pytest.approx(3.5)
    four = interval_estimates(np.array([0.4, 0.1, 0.3, 0.2]), reps=2000)
    assert four.iqm == pytest.approx(0.25) and 0.1 <= four.low < 0.25 < four.high <= 0.4
    # Two seeds, 0 and 1: a resample is {0, 0}, {0, 1}, {1, 0} or {1, 1}, and a trimmed mean of 2 values trims
    # nothing, so the bootstrap IQMs are 0, 0.5, 0.5, 1 with chances 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # percentiles are 0 and 1.
    two = interval_estimates(np.array([0.0, 1.0]), reps=2000)
    assert (two.iqm, two.low, two.high) == pytest.approx((0.5, 0.0, 1.0))
    same = interval_estimates(np.array([0.7, 0.7, 0.7]), reps=200)
    assert (same.iqm, same.low, same.high) == pytest.approx((0.7, 0.7, 0.7))


@needs_rliable
def test_aggregate_groups_finished_seeds_per_model_and_setting():
    from studies.report import aggregate

    def row(setting, seed, success, memory, status="done"):
        metrics = {"success_greedy": success, "success": success / 2, "return_greedy": success, "return": 0.0}
        return {"task": "corridor", "model": "transformer_xl", "setting": setting, "seed": seed, "status": status,
                "memory_mean": memory, **metrics}  # fmt: skip

    rows = [row("mem_len=8", s, v, m) for s, v, m in [(0, 0.4, 7.0), (1, 0.1, 8.0), (2, 0.3, 6.0), (3, 0.2, 5.0)]]
    rows += [row("mem_len=8", 4, 1.0, 100.0, status="failed"), row("mem_len=16", 0, 0.9, 15.0)]
    small, large = aggregate(rows, reps=200)
    assert (small.setting, small.seeds, large.setting, large.seeds) == ("mem_len=8", 4, "mem_len=16", 1)
    assert small.metrics["success_greedy"].iqm == pytest.approx(0.25)  # the failed seed's 1.0 is left out
    assert small.metrics["success"].iqm == pytest.approx(0.125)
    assert small.memory.iqm == pytest.approx(6.5)  # (6 + 7) / 2
    assert large.metrics["success_greedy"].iqm == pytest.approx(0.9)


@needs_rliable
@pytest.mark.slow
def test_a_tiny_study_runs_skips_finished_cells_resumes_and_reports_a_failing_cell(tmp_path, capsys):
    path = write_study(tmp_path / "tiny.toml", 2 * UPDATE, TINY_MODELS)
    out = tmp_path / "out"
    argv = [str(path), "--out", str(out), "--workers", "2", "--threads", "1"]
    assert study_runner.main(argv, poll_s=0.1) == 1  # one cell fails
    printed = capsys.readouterr()
    failing = "corridor-expire_span-max_span-1-seed0"
    assert f"cell {failing} failed: train_agent.py: error: max_span" in printed.err
    cells = out / "cells"
    small, large = cells / "corridor-transformer_xl-mem_len4-seed0", cells / "corridor-transformer_xl-mem_len8-seed0"
    for cell_dir in (small, large):
        result = (cell_dir / RESULT_NAME).read_text()
        assert '"episodes": 4.0' in result and '"memory_layers": [' in result
        assert len(commands(cell_dir)) == 1
    with (out / "cells.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(row["setting"], row["status"]) for row in rows] == [
        ("mem_len=4", "done"),
        ("mem_len=8", "done"),
        ("max_span=-1", "failed"),
    ]
    for row in rows[:2]:
        assert 0 <= float(row["success_greedy"]) <= 1 and 0 <= float(row["success"]) <= 1
        layers = [float(size) for size in row["memory_layers"].split()]
        # A cache of mem_len steps, and episodes of at most 12 steps: each query sees fewer than both.
        assert len(layers) == 2 and 0 < float(row["memory_mean"]) <= min(int(row["setting"].split("=")[1]), 12)
    assert "max_span and ramp must be at least 1" in rows[2]["error"]
    table = (out / "table.md").read_text()
    assert "| corridor | transformer_xl | mem_len=4 | 1 |" in table and f"`{failing}`" in table
    assert (out / "figure4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Again: the finished cells are skipped (no new command in their logs); the failing one is tried again.
    assert study_runner.main(argv, poll_s=0.1) == 1
    assert len(commands(small)) == len(commands(large)) == 1
    assert len(commands(cells / failing)) == 2

    # An interrupted cell (a checkpoint, no result) resumes from its checkpoint in the same run directory.
    (small / RESULT_NAME).unlink()
    write_study(path, 4 * UPDATE, TINY_MODELS)
    assert study_runner.main(argv, poll_s=0.1) == 1
    resumed = commands(small)
    assert len(resumed) == 2 and "--resume" in resumed[1] and "train.cpu_threads=1" in resumed[1]
    (checkpoint,) = small.glob("*/checkpoint.pt")
    assert load_checkpoint(checkpoint)["global_step"] == 4 * UPDATE
    assert len(commands(large)) == 1


@needs_rliable
def test_metrics_some_seeds_lack_are_left_out_and_the_table_shows_only_what_exists():
    from studies.report import aggregate, markdown_table

    def row(model, seed, mmer, success=None):
        metrics = {"return_greedy": mmer / 2, "return": mmer / 4, "mmer": mmer, "success_greedy": success}
        return {"task": "CartPole-v1", "model": model, "setting": "-", "seed": seed, "status": "done", **metrics}

    rows = [row("lstm", 0, 0.5, success=1.0), row("lstm", 1, 0.7), row("recurrent_ppo", 0, 0.2)]
    lstm, peer = aggregate(rows, reps=200)
    assert set(lstm.metrics) == {"return_greedy", "return", "mmer"}  # seed 1 has no success: none for the group
    assert lstm.metrics["mmer"].iqm == pytest.approx(0.6) and peer.metrics["mmer"].iqm == pytest.approx(0.2)
    table = markdown_table([lstm, peer], [])
    assert "| greedy return | sampled return | MMER |" in table and "success" not in table.split("\n")[0]
    assert "| CartPole-v1 | recurrent_ppo | - | 1 | - | 0.100 [0.100, 0.100] | 0.050 [0.050, 0.050] |" in table


@needs_rliable
def test_the_score_matrix_has_a_row_per_task_and_a_column_per_model_with_gaps_shown():
    from studies.report import aggregate, score_matrix

    def row(task, model, seed, mmer):
        return {"task": task, "model": model, "setting": "-", "seed": seed, "status": "done", "mmer": mmer}

    rows = [row("A-v0", "lstm", 0, 0.5), row("A-v0", "lstm", 1, 0.7), row("A-v0", "none", 0, -0.5)]
    rows += [row("B-v0", "lstm", 0, 0.2)]
    lines = score_matrix(aggregate(rows, reps=100), "mmer").splitlines()
    assert lines[:4] == [
        "| task | lstm | none |",
        "| --- | ---: | ---: |",
        "| A-v0 | 0.600 | -0.500 |",
        "| B-v0 | 0.200 | - |",
    ]


@needs_rliable
@needs_peer
@pytest.mark.slow
def test_a_gymnasium_study_trains_the_models_and_the_peer_and_reports_their_mmer(tmp_path):
    path = tmp_path / "gym.toml"
    sets = ["train.num_envs=2", "ppo.minibatches=2", "train.unroll=8", "model.d_model=16", "model.n_heads=2"]
    sets += ["log.every_updates=1"]
    path.write_text(
        '[study]\ntask = "CartPole-v1"\nsteps = 64\neval_episodes = 2\n'
        f"set = [{', '.join(repr(item).replace(chr(39), chr(34)) for item in sets)}]\n\n"
        "[models.gru]\n[models.recurrent_ppo]\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert study_runner.main([str(path), "--out", str(out), "--threads", "1", "--reps", "50"], poll_s=0.1) == 0
    with (out / "cells.csv").open() as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    for model in ("gru", "recurrent_ppo"):
        row = rows[model]
        assert row["status"] == "done" and row["success"] == ""  # CartPole reports no success
        # CartPole pays 1 per step: an episode's return is its length, and the best interval mean at least 8.
        assert float(row["mmer"]) >= 8 and float(row["return_greedy"]) == pytest.approx(float(row["length_greedy"]))
    (peer_run,) = (out / "cells" / "CartPole-v1-recurrent_ppo-seed0").glob("CartPole-v1-recurrent_ppo-seed0-*")
    assert (peer_run / "model.zip").is_file()
    assert "| CartPole-v1 | recurrent_ppo | - | 1 |" in (out / "table.md").read_text()
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_rliable
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="needs the cluster extra")
def test_the_same_study_runs_through_submitits_local_mode(tmp_path):
    models = '[models.transformer_xl]\nparam = "model.transformer_xl.mem_len"\nvalues = [4]\n'
    path = write_study(tmp_path / "tiny.toml", UPDATE, models)
    out = tmp_path / "out"
    argv = [str(path), "--out", str(out), "--engine", "submitit", "--cluster", "local", "--threads", "1"]
    assert study_runner.main(argv, poll_s=0.2) == 0
    assert (out / "cells" / "corridor-transformer_xl-mem_len4-seed0" / RESULT_NAME).is_file()
    assert list((out / "submitit").glob("*/*_result.pkl")), "the cell ran as a submitit job"


@needs_rliable  # the runner checks for rliable first
def test_a_second_run_of_a_study_in_progress_is_refused(tmp_path, capsys):
    import fcntl

    path = write_study(tmp_path / "tiny.toml", UPDATE, TINY_MODELS)
    out = tmp_path / "out"
    out.mkdir()
    with (out / study_runner.LOCK_NAME).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        with pytest.raises(SystemExit) as stopped:
            study_runner.main([str(path), "--out", str(out)])
    assert stopped.value.code == 2
    assert "another run of this study is using" in capsys.readouterr().err
    assert not (out / "cells").exists(), "nothing trained"


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux /proc: the children of each of its threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@needs_rliable
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux /proc")
def test_a_terminated_study_stops_its_running_cells(tmp_path):
    models = '[models.transformer_xl]\nparam = "model.transformer_xl.mem_len"\nvalues = [4]\n'
    path = write_study(tmp_path / "long.toml", 10_000 * UPDATE, models)  # minutes of training: it is stopped first
    command = [sys.executable, "-m", "runners.study", str(path), "--out", str(tmp_path / "out"), "--threads", "1"]
    study = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (cells := children(study.pid)) and time.monotonic() < deadline and study.poll() is None:
            time.sleep(0.2)
        assert cells, "the study started no cell"
        study.send_signal(signal.SIGTERM)
        _, err = study.communicate(timeout=60)
    finally:
        study.kill()
    assert study.returncode == 130 and "stopped; the same command resumes it" in err
    for cell in cells:
        with pytest.raises(ProcessLookupError):
            os.kill(cell, 0)
