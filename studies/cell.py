"""One cell of a study: train it with runners/train_agent.py (or resume it), read its held-out evaluation,
the memory it used and its best training return, record its results.

The training is a subprocess of the ordinary training runner, so a crash, a divergence or a bad setting in
one cell cannot touch another, and the cell's run directory is exactly what ``train_agent.py`` writes.
A cell is finished once its ``result.json`` exists; until then its checkpoint, if any, is resumed. The
peer's cells (``recurrent_ppo``) run ``runners/recurrent_ppo.py`` the same way, but start afresh when
interrupted: SB3 saves nothing to resume from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.recurrent_ppo import MODEL_NAME as PEER
from studies.spec import Cell

RESULT_NAME = "result.json"
LOG_NAME = "train.log"
THREADS_NAME = "threads"
CHECKPOINT_NAME = "checkpoint.pt"
THREADS_KEY = "train.cpu_threads"
EVAL_LINE = re.compile(  # train_agent.py's; an env without a success measure prints no success
    r"held-out evaluation \((?P<episodes>\d+) episodes\): sampled (success (?P<success>[\d.]+)%, )?"
    r"return (?P<return>-?[\d.]+), length (?P<length>[\d.]+); greedy (success (?P<success_greedy>[\d.]+)%, )?"
    r"return (?P<return_greedy>-?[\d.]+), length (?P<length_greedy>[\d.]+)"
)
MEMORY_TAG = re.compile(r"memory/size_layer(\d+)$")
RETURN_TAG = "episode/return"  # the mean return of the episodes of one log interval, as train_agent.py logs it
_RUNNING: set[subprocess.Popen] = set()  # the train_agent.py processes this process waits on
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell; plain data, so it pickles to a submitit (Slurm) worker."""

    cell: Cell
    directory: Path  # the cell's own folder: train_agent's --logdir, the log and result.json
    eval_episodes: int
    memory_window: float
    device: str = "cpu"
    threads: int = 0  # torch threads per cell; 0 keeps the config's train.cpu_threads


class CellFailed(RuntimeError):
    """A cell whose training or evaluation exited with an error; the message is the runner's own error line."""


def result_path(directory: Path) -> Path:
    return directory / RESULT_NAME


def find_checkpoint(directory: Path) -> Path | None:
    """The cell's checkpoint; run directories a crash left before their first checkpoint are removed."""
    checkpoints = []
    for run_dir in sorted(directory.iterdir()) if directory.is_dir() else []:
        if not run_dir.is_dir():
            continue
        if (run_dir / CHECKPOINT_NAME).is_file():
            checkpoints.append(run_dir / CHECKPOINT_NAME)
        else:
            shutil.rmtree(run_dir)  # nothing to resume: the next start makes a fresh one
    if len(checkpoints) > 1:
        raise CellFailed(f"{directory} holds several runs ({', '.join(str(c.parent.name) for c in checkpoints)})")
    return checkpoints[0] if checkpoints else None


def last_error_line(text: str) -> str:
    """The last line the runner printed (its error, or a traceback's exception), progress-bar redraws aside."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no output"


def run_runner(module: str, args: list[str], log: Path) -> str:
    """Run ``python -m MODULE ARGS``, appending its output to ``log``; its output, or CellFailed."""
    command = [sys.executable, "-m", module, *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **pipes) as process:
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        try:
            stdout, stderr = process.communicate()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
    with log.open("a", encoding="utf-8") as file:
        file.write(f"$ {' '.join(command)}\n{stdout}{stderr}(exit status {process.returncode})\n")
    if process.returncode != 0:
        raise CellFailed(f"{last_error_line(stderr or stdout)} (exit status {process.returncode}; log {log})")
    return stdout


def stop_running() -> None:
    """Terminate every train_agent.py this process started and still waits on (a study that is stopped stops
    its cells, rather than leaving them to race the next run's resume); their last checkpoints stay whole."""
    with _RUNNING_LOCK:
        processes = list(_RUNNING)
    for process in processes:
        process.terminate()


def train(job: CellJob) -> tuple[Path, str]:
    """Start the cell's run, or resume it from its checkpoint; the finished run's directory and output.

    A resume repeats the start's flags, so train_agent.py refuses it if the study file changed under this
    cell; the thread count is the one the run started with (recorded in ``threads``), whatever this run of
    the study asks, since it is part of the run's config. ``log.eval_episodes`` is the study's: the run's
    final held-out evaluation is then exactly ``--resume CHECKPOINT --eval N`` (same function, policy and
    seeds), without a second process.
    """
    log, recorded = job.directory / LOG_NAME, job.directory / THREADS_NAME
    checkpoint = find_checkpoint(job.directory)
    threads = int(recorded.read_text()) if checkpoint is not None and recorded.is_file() else job.threads
    recorded.write_text(f"{threads}\n")
    flags = [*runner_flags(job, threads), "--model", job.cell.model, "--device", job.device]
    if checkpoint is not None:
        return checkpoint.parent, run_runner("runners.train_agent", ["--resume", str(checkpoint), *flags], log)
    output = run_runner("runners.train_agent", flags, log)
    checkpoint = find_checkpoint(job.directory)
    if checkpoint is None:
        raise CellFailed(f"train_agent.py wrote no checkpoint under {job.directory} (log {log})")
    return checkpoint.parent, output


def train_peer(job: CellJob) -> tuple[Path, str]:
    """Train the peer's cell from the start (an interrupted one's run directory is removed first)."""
    for run_dir in job.directory.iterdir():
        if run_dir.is_dir():
            shutil.rmtree(run_dir)
    output = run_runner("runners.recurrent_ppo", runner_flags(job, job.threads), job.directory / LOG_NAME)
    runs = [run_dir for run_dir in job.directory.iterdir() if run_dir.is_dir()]
    if len(runs) != 1:
        raise CellFailed(f"runners/recurrent_ppo.py left {len(runs)} run directories under {job.directory}")
    return runs[0], output


def runner_flags(job: CellJob, threads: int) -> list[str]:
    """The flags both runners take: env, seed, steps, run folder, config and every --set of the cell."""
    cell = job.cell
    overrides = [*cell.overrides, f"log.eval_episodes={job.eval_episodes}"]
    overrides += [f"{THREADS_KEY}={threads}"] if threads > 0 else []
    flags = ["--env", cell.task, "--seed", str(cell.seed), "--steps", str(cell.steps), "--logdir", str(job.directory)]
    flags += ["--config", str(cell.config)] if cell.config is not None else []
    return flags + [arg for item in overrides for arg in ("--set", item)]


def held_out_results(output: str) -> dict[str, float]:
    """The run's final held-out evaluation, parsed from its ``held-out evaluation (N episodes): ...`` line."""
    match = EVAL_LINE.search(output)
    if match is None:
        raise CellFailed(f"no held-out evaluation line in the runner's output: {last_error_line(output)!r}")
    values = {key: float(value) for key, value in match.groupdict().items() if value is not None}
    for key in ("success", "success_greedy"):
        if key in values:
            values[key] /= 100
    return values


def training_curves(run_dir: Path, window: float) -> tuple[list[float], float | None]:
    """From the run's TensorBoard scalars: per layer, the mean of ``memory/size_layer<k>`` over the last
    ``window`` of its steps (the training record's mean number of past steps a query attends to; empty if
    the run logged none), and the best ``episode/return`` (POPGym's max-mean episodic return, MMER; None
    if no episode ended)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    # By step: a resumed run's events replace the ones its predecessor logged past the checkpoint.
    by_step = {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in tags}
    layers = sorted((int(found.group(1)), tag) for tag in tags if (found := MEMORY_TAG.match(tag)))
    sizes = []
    for _, tag in layers:
        last = max(by_step[tag])
        tail = [value for step, value in by_step[tag].items() if step >= (1 - window) * last]
        sizes.append(sum(tail) / len(tail))
    returns = by_step.get(RETURN_TAG)
    return sizes, max(returns.values()) if returns else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Written to a temp file and renamed, so a result is never half-written."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    temp.replace(path)


def run_cell(job: CellJob) -> dict[str, Any]:
    """Run one cell to its result; returns ``{"name", "status": "done" | "skipped" | "failed", "error"}``.

    Never raises for the cell's own failure: the study reports it and goes on with the others.
    """
    cell = job.cell
    outcome: dict[str, Any] = {"name": cell.name, "status": "done", "error": None}
    if result_path(job.directory).is_file():
        return {**outcome, "status": "skipped"}
    start = time.perf_counter()
    try:
        job.directory.mkdir(parents=True, exist_ok=True)
        run_dir, output = (train_peer if cell.model == PEER else train)(job)
        results = held_out_results(output)
        layers, mmer = training_curves(run_dir, job.memory_window)
    except (CellFailed, OSError) as error:
        return {**outcome, "status": "failed", "error": str(error)}
    result = {
        "task": cell.task,
        "model": cell.model,
        "setting": cell.setting_label,
        "seed": cell.seed,
        "steps": cell.steps,
        **results,
        "memory_mean": sum(layers) / len(layers) if layers else None,
        "memory_layers": layers,
        "mmer": mmer,
        "wall_s": round(time.perf_counter() - start, 1),
        "run_dir": str(run_dir),
    }
    write_json(result_path(job.directory), result)
    return outcome
