"""Where a study's cells run: here (threads driving train_agent.py subprocesses) or through submitit (Slurm,
or its local mode), with at most ``workers`` cells in flight either way and one progress bar for the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from studies.cell import CellJob, run_cell, stop_running

ENGINES = ("local", "submitit")


class Handle(Protocol):
    """What both a concurrent.futures.Future and a submitit.Job offer."""

    def done(self) -> bool: ...

    def result(self) -> Any: ...


Submit = Callable[[CellJob], Handle]


class LocalEngine:
    """Threads, each waiting on its cell's subprocesses: the cells run in parallel, the GIL aside."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def submit(self, job: CellJob) -> Handle:
        return self.pool.submit(run_cell, job)

    def stop(self) -> None:
        stop_running()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class SubmititEngine:
    """One submitit job per cell: Slurm where ``srun`` exists (or ``cluster="slurm"``), else submitit's local
    mode, which runs each job as a subprocess of this machine."""

    def __init__(
        self,
        folder: Path,
        cluster: str | None,
        threads: int,
        gpus: int,
        timeout_min: int,
        partition: str | None,
    ):
        try:
            import submitit
        except ImportError as error:
            raise SystemExit("--engine submitit needs submitit: pip install -e '.[cluster]'") from error
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        parameters: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": max(threads, 1), "name": "study"}
        if gpus:
            parameters["gpus_per_node"] = gpus
        if partition:
            parameters["slurm_partition"] = partition
        self.executor.update_parameters(**parameters)
        self.jobs: list[Any] = []

    def submit(self, job: CellJob) -> Handle:
        self.jobs.append(self.executor.submit(run_cell, job))
        return self.jobs[-1]

    def stop(self) -> None:
        for job in self.jobs:
            if not job.done():
                job.cancel(check=False)

    def close(self) -> None:
        """Nothing to release: submitit's jobs end on their own."""


def outcome_of(job: CellJob, handle: Handle) -> dict[str, Any]:
    """The cell's outcome; a worker that died without one (killed, out of memory, out of time) is a failure."""
    try:
        return handle.result()
    except Exception as error:  # whatever the engine raises for a lost worker, the study goes on
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        return {"name": job.cell.name, "status": "failed", "error": lines[-1] if lines else type(error).__name__}


def run_jobs(
    jobs: Iterable[CellJob],
    submit: Submit,
    workers: int,
    bar: tqdm,
    poll_s: float = 0.5,
    report: Callable[[dict[str, Any]], None] = lambda outcome: None,
) -> list[dict[str, Any]]:
    """Run every job, at most ``workers`` at a time; the bar counts cells done and shows how many run."""
    pending, running, outcomes = list(jobs), [], []
    failed, shown = 0, None
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            running.append((job, submit(job)))
        if shown != (len(running), failed):  # redraw on a change only: the bar stays one line in a log
            shown = (len(running), failed)
            bar.set_postfix(running=len(running), failed=failed)
        time.sleep(poll_s)
        still = []
        for job, handle in running:
            if not handle.done():
                still.append((job, handle))
                continue
            outcome = outcome_of(job, handle)
            failed += outcome["status"] == "failed"
            outcomes.append(outcome)
            report(outcome)
            bar.update(1)
        running = still
    bar.set_postfix(running=0, failed=failed)
    return outcomes
