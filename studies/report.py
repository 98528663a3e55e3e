"""A study's results: a CSV of every cell, IQMs over seeds with stratified-bootstrap intervals, a table, Figure 4
and a bar chart of every model's score per task.

The statistics are rliable's (Agarwal et al., 2021): the interquartile mean (the mean of the middle 50%
of runs, robust to one outlier seed yet less noisy than the median) and its percentile confidence
interval from a stratified bootstrap over seeds. rliable comes with the optional ``study`` extra.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("success_greedy", "success", "return_greedy", "return", "mmer")  # an env without success: no success
METRIC_NAMES = {
    "success_greedy": "greedy success", "success": "sampled success", "return_greedy": "greedy return",
    "return": "sampled return", "mmer": "MMER",
}  # fmt: skip
CELL_COLUMNS = (
    "task", "model", "setting", "seed", "status", "steps", "success_greedy", "return_greedy", "length_greedy",
    "success", "return", "length", "mmer", "memory_mean", "memory_layers", "wall_s", "run_dir", "error",
)  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """An IQM over seeds and its confidence interval."""

    iqm: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.iqm:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Group:
    """One model at one memory setting, aggregated over its finished seeds."""

    task: str
    model: str
    setting: str
    seeds: int
    memory: Estimate | None  # the mean memory used; None when the model logged no memory size
    metrics: dict[str, Estimate]  # the METRICS every seed has


def interval_estimates(scores: np.ndarray, reps: int, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """IQM of ``scores`` (one value per seed) with rliable's stratified-bootstrap percentile interval."""
    from rliable import library, metrics

    with warnings.catch_warnings():
        # rliable passes arch the RandomState that arch 7 deprecates; the draws are the same, the warning noise.
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = library.get_interval_estimates(
            {"x": np.asarray(scores, dtype=float).reshape(-1, 1)},  # runs x tasks: one task
            lambda x: np.array([metrics.aggregate_iqm(x)]),
            reps=reps,
            confidence_interval_size=confidence,
            random_state=np.random.RandomState(seed),
        )
    return Estimate(float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0]))


def aggregate(rows: list[dict[str, Any]], reps: int = 2000) -> list[Group]:
    """Group finished cells by (task, model, setting) in study order and aggregate each metric over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("status", "done") == "done":
            groups[(row["task"], row["model"], row["setting"])].append(row)
    out = []
    for (task, model, setting), members in groups.items():
        memory = [row["memory_mean"] for row in members if row.get("memory_mean") is not None]
        metrics = {
            name: interval_estimates(np.array([row[name] for row in members]), reps)
            for name in METRICS
            if all(row.get(name) is not None for row in members)
        }
        memory_estimate = interval_estimates(np.array(memory), reps) if memory else None
        out.append(Group(task, model, setting, len(members), memory_estimate, metrics))
    return out


def _cell_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(f"{item:.6g}" for item in value)
    return str(value)


def write_cells_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Every cell, finished or failed, one row each (memory_layers: the per-layer means, space-separated)."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CELL_COLUMNS)
        for row in rows:
            writer.writerow([_cell_value(row.get(column)) for column in CELL_COLUMNS])


def markdown_table(groups: list[Group], failed: list[dict[str, Any]]) -> str:
    """IQM [95% CI] over seeds per model and memory setting; failed cells listed below by name."""
    shown = [name for name in METRICS if any(name in group.metrics for group in groups)]
    lines = [
        "| task | model | memory setting | seeds | memory used | " + " | ".join(METRIC_NAMES[n] for n in shown) + " |",
        "|" + " --- |" * (5 + len(shown)),
    ]
    for group in groups:
        memory = f"{group.memory.iqm:.1f} [{group.memory.low:.1f}, {group.memory.high:.1f}]" if group.memory else "-"
        cells = " | ".join(str(group.metrics[name]) if name in group.metrics else "-" for name in shown)
        lines.append(f"| {group.task} | {group.model} | {group.setting} | {group.seeds} | {memory} | {cells} |")
    lines += ["", "IQM over seeds [95% stratified-bootstrap CI]; memory used: mean past steps a query attends to."]
    if "mmer" in shown:
        lines += ["MMER: the best mean training return over a log interval (POPGym's max-mean episodic return)."]
    if failed:
        lines += ["", "Failed cells:", ""]
        lines += [f"- `{row['name']}`: {row['error']}" for row in failed]
    return "\n".join(lines) + "\n"


def score_matrix(groups: list[Group], metric: str) -> str:
    """A task x model (and setting) table of one metric's IQM over seeds, for studies of several tasks."""
    columns = list(dict.fromkeys((group.model, group.setting) for group in groups))
    cell = {(group.task, group.model, group.setting): group.metrics.get(metric) for group in groups}
    names = [model if setting == "-" else f"{model} {setting}" for model, setting in columns]
    lines = [f"| task | {' | '.join(names)} |", "| --- |" + " ---: |" * len(columns)]
    for task in _tasks_of(groups):
        values = [cell.get((task, *column)) for column in columns]
        lines.append(f"| {task} | " + " | ".join("-" if v is None else f"{v.iqm:.3f}" for v in values) + " |")
    return "\n".join([*lines, "", f"{METRIC_NAMES[metric]}, IQM over seeds (intervals in the table above)."]) + "\n"


def _panels(tasks: list[str], title: str):
    """A figure with one panel per task, at most three to a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(tasks), 3)
    rows = -(-len(tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    for spare in axes.flat[len(tasks) :]:
        spare.set_visible(False)
    figure.suptitle(title)
    return plt, figure, dict(zip(tasks, axes.flat, strict=False))


def _arrays(estimates: list[Estimate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IQMs, lower and upper ends of ``estimates`` as three arrays."""
    return tuple(np.array([getattr(estimate, end) for estimate in estimates]) for end in ("iqm", "low", "high"))


def _tasks_of(groups: list[Group]) -> list[str]:
    return list(dict.fromkeys(group.task for group in groups)) or ["-"]


def plot_figure4(groups: list[Group], path: Path, title: str, metric: str = "success_greedy") -> None:
    """The paper's Figure 4, one panel per task: x the mean memory used, y success (IQM; or another metric,
    for envs without success), one line per model with its CI band. Models without a memory size (the
    recurrent ones) have no place on its x axis."""
    plt, figure, panels = _panels(_tasks_of(groups), title)
    for task, axes in panels.items():
        by_model: dict[str, list[Group]] = defaultdict(list)
        for group in groups:
            if group.task == task and group.memory is not None and metric in group.metrics:
                by_model[group.model].append(group)
        for model, members in by_model.items():
            members.sort(key=lambda group: group.memory.iqm)
            x, x_low, x_high = _arrays([group.memory for group in members])
            y, low, high = _arrays([group.metrics[metric] for group in members])
            # Bars as well as the band: a model with one setting (Expire-Span's learned memory) has no band to draw.
            bars = axes.errorbar(x, y, yerr=[y - low, high - y], xerr=[x - x_low, x_high - x], marker="o", capsize=3)
            bars.set_label(model)
            axes.fill_between(x, low, high, color=bars.lines[0].get_color(), alpha=0.2)
        axes.set_xlabel("memory used (mean past steps attended, per layer)")
        axes.set_ylabel(f"{METRIC_NAMES[metric]} (IQM, 95% CI)")
        if metric.startswith("success"):
            axes.set_ylim(-0.02, 1.02)
        axes.set_title(task)
        axes.grid(alpha=0.3)
        if by_model:
            axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_scores(groups: list[Group], path: Path, title: str, metric: str) -> None:
    """One panel per task: a point per model and memory setting, the IQM of ``metric`` with its 95% CI."""
    plt, figure, panels = _panels(_tasks_of(groups), title)
    for task, axes in panels.items():
        members = [group for group in groups if group.task == task and metric in group.metrics]
        labels = [group.model if group.setting == "-" else f"{group.model}\n{group.setting}" for group in members]
        y, low, high = _arrays([group.metrics[metric] for group in members])
        axes.errorbar(range(len(members)), y, yerr=[y - low, high - y], fmt="o", capsize=4)  # no baseline to hang from
        axes.set_xticks(range(len(members)), labels, rotation=45, ha="right", fontsize=8)
        axes.set_ylabel(f"{METRIC_NAMES[metric]} (IQM over seeds, 95% CI)")
        axes.set_title(task)
        axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
