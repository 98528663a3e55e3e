"""Run a study: every cell (task x model x memory setting x seed) of a study file, then the paper's Figure 4.

    python -m runners.study configs/studies/corridor_cpu.toml --workers 2 --threads 1
    python -m runners.study configs/studies/popgym_cpu.toml --workers 2 --threads 1   # five envs, the peer beside
    python -m runners.study configs/studies/corridor_paper.toml --device cuda --workers 4
    python -m runners.study STUDY.toml --engine submitit --cluster slurm --partition gpu --device cuda
    python -m runners.study STUDY.toml --report-only        # the table and plot from the cells finished so far

Each cell trains with runners/train_agent.py in its own run directory under OUT/cells/<cell>/, then is
evaluated like ``--resume CHECKPOINT --eval N``. Running the same command again skips finished cells and
resumes interrupted ones from their checkpoints; a failing cell is reported by name and the others go on.
OUT (default runs/studies/<study name>) then holds cells.csv (every cell), table.md (IQM over seeds with
95% stratified-bootstrap intervals), figure4.png (success against the mean memory used, a panel per task)
and scores.png (a point per model and setting with its interval). Both show held-out greedy success (or
--metric's), or the MMER, the best mean training return, where the envs have no success measure.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from studies import report
from studies.cell import CellJob, result_path
from studies.engines import ENGINES, LocalEngine, SubmititEngine, run_jobs
from studies.spec import Study, load_study
from training.config import ConfigError
from training.paths import PathError, check_writable_dir

DEFAULT_OUT = Path("runs") / "studies"
LOCK_NAME = "study.lock"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners.study",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", type=Path, help="the study file (TOML; see configs/studies/)")
    parser.add_argument("--out", type=Path, help="the study's folder (default runs/studies/<study name>)")
    parser.add_argument("--workers", type=int, default=1, help="cells trained at once (default 1)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per cell (train.cpu_threads; default 0: the config's)"
    )
    parser.add_argument("--device", default="cpu", help="every cell's --device: cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="where cells run (default local)")
    parser.add_argument(
        "--cluster", choices=("slurm", "local", "debug"), help="submitit's cluster (default: Slurm where srun exists)"
    )
    parser.add_argument("--partition", help="Slurm partition (submitit)")
    parser.add_argument("--timeout-min", type=int, default=24 * 60, help="a cell's time limit on Slurm (minutes)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the finished cells")
    parser.add_argument(
        "--metric",
        choices=("success_greedy", "success"),
        default="success_greedy",
        help="Figure 4's y: held-out greedy or sampled success (default success_greedy)",
    )
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for flag, value, least in (
        ("--workers", args.workers, 1),
        ("--threads", args.threads, 0),
        ("--reps", args.reps, 1),
    ):
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    if importlib.util.find_spec("rliable") is None:
        parser.error("a study's statistics need rliable: pip install -e '.[study]' (make study does it)")


def rows_of(jobs: list[CellJob], outcomes: dict[str, dict]) -> list[dict]:
    """One row per cell in study order: its result.json, or its failure, or ``missing`` (not run yet)."""
    rows = []
    for job in jobs:
        cell, path = job.cell, result_path(job.directory)
        base = {"name": cell.name, "task": cell.task, "model": cell.model, "setting": cell.setting_label}
        base |= {"seed": cell.seed, "steps": cell.steps}
        if path.is_file():
            rows.append({**base, **json.loads(path.read_text(encoding="utf-8")), "status": "done"})
        elif cell.name in outcomes and outcomes[cell.name]["status"] == "failed":
            rows.append({**base, "status": "failed", "error": outcomes[cell.name]["error"]})
        else:
            rows.append({**base, "status": "missing"})
    return rows


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """Held while a study runs in ``out``: a second run of it would train the same cells at once, and take a
    running cell's fresh run directory (no checkpoint yet) for a crashed one's leftovers."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_NAME).open("w") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PathError(f"another run of this study is using {out} (it holds {out / LOCK_NAME})") from None
        yield  # the lock goes with the file's closing, and with the process if it dies


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or a user's kill) stops the study as Ctrl-C does: its running cells are stopped too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_report(rows: list[dict], out: Path, title: str, reps: int, metric: str) -> str:
    """cells.csv, table.md, figure4.png and scores.png in ``out``; returns the table."""
    report.write_cells_csv(rows, out / "cells.csv")
    groups = report.aggregate(rows, reps=reps)
    table = report.markdown_table(groups, [row for row in rows if row["status"] == "failed"])
    score = metric if any(metric in group.metrics for group in groups) or not groups else "mmer"
    if len({group.task for group in groups}) > 1:
        table += "\n" + report.score_matrix(groups, score)
    (out / "table.md").write_text(table, encoding="utf-8")
    report.plot_figure4(groups, out / "figure4.png", title, score)
    report.plot_scores(groups, out / "scores.png", title, score)
    return table


def make_engine(args: argparse.Namespace, out: Path) -> LocalEngine | SubmititEngine:
    if args.engine == "local":
        return LocalEngine(args.workers)
    gpus = 0 if args.device == "cpu" else 1
    return SubmititEngine(out / "submitit", args.cluster, args.threads, gpus, args.timeout_min, args.partition)


def run_cells(args: argparse.Namespace, study: Study, jobs: list[CellJob], out: Path, poll_s: float) -> dict[str, dict]:
    """Run the unfinished cells under one progress bar; their outcomes by cell name."""
    todo = [job for job in jobs if not result_path(job.directory).is_file()]
    if not todo:
        return {}
    print(f"study {study.name}: {len(jobs)} cells, {len(jobs) - len(todo)} finished before; out {out}", flush=True)

    def tell(outcome: dict) -> None:
        if outcome["status"] == "failed":
            tqdm.write(f"cell {outcome['name']} failed: {outcome['error']}", file=sys.stderr)

    engine = make_engine(args, out)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="cell", desc=study.name)
    try:
        outcomes = run_jobs(todo, engine.submit, args.workers, bar, poll_s=poll_s, report=tell)
    except KeyboardInterrupt:
        engine.stop()
        raise
    finally:
        bar.close()
        engine.close()
    return {outcome["name"]: outcome for outcome in outcomes}


def main(argv: list[str] | None = None, poll_s: float = 0.5) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    try:
        study = load_study(args.study)
        out = (args.out or DEFAULT_OUT / study.name).resolve()
        check_writable_dir(out, "--out")
    except (ConfigError, PathError) as error:
        parser.error(str(error))
    jobs = [
        CellJob(cell, out / "cells" / cell.name, study.eval_episodes, study.memory_window, args.device, args.threads)
        for cell in study.cells
    ]
    start = time.perf_counter()
    outcomes: dict[str, dict] = {}
    if not args.report_only:  # a report reads finished cells only: it may run beside the study
        try:
            with study_lock(out), terminate_as_interrupt():
                outcomes = run_cells(args, study, jobs, out, poll_s)
        except PathError as error:
            parser.error(str(error))
        except KeyboardInterrupt:
            print(f"study {study.name} stopped; the same command resumes it", file=sys.stderr)
            return 130
    out.mkdir(parents=True, exist_ok=True)
    rows = rows_of(jobs, outcomes)
    title = f"{study.tasks[0]}: {study.name}" if len(study.tasks) == 1 else study.name
    table = write_report(rows, out, title, args.reps, args.metric)
    print(table, end="")
    counts = {status: sum(row["status"] == status for row in rows) for status in ("done", "failed", "missing")}
    print(
        f"{counts['done']} of {len(rows)} cells finished, {counts['failed']} failed, {counts['missing']} not run "
        f"({time.perf_counter() - start:.0f} s); in {out}: cells.csv, table.md, figure4.png, scores.png"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
