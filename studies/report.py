"""A study's results: a CSV of every cell, IQMs over seeds with stratified-bootstrap intervals, a table, Figure 4.

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

METRICS = ("success_greedy", "success", "return_greedy", "return")
CELL_COLUMNS = (
    "task", "model", "setting", "seed", "status", "steps", "success_greedy", "return_greedy", "length_greedy",
    "success", "return", "length", "memory_mean", "memory_layers", "wall_s", "run_dir", "error",
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
    metrics: dict[str, Estimate]


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
        out.append(
            Group(
                task,
                model,
                setting,
                len(members),
                interval_estimates(np.array(memory), reps) if memory else None,
                {name: interval_estimates(np.array([row[name] for row in members]), reps) for name in METRICS},
            )
        )
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
    lines = [
        "| task | model | memory setting | seeds | memory used | greedy success | sampled success | greedy return "
        "| sampled return |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for group in groups:
        memory = f"{group.memory.iqm:.1f} [{group.memory.low:.1f}, {group.memory.high:.1f}]" if group.memory else "-"
        cells = " | ".join(str(group.metrics[name]) for name in METRICS)
        lines.append(f"| {group.task} | {group.model} | {group.setting} | {group.seeds} | {memory} | {cells} |")
    lines += ["", "IQM over seeds [95% stratified-bootstrap CI]; memory used: mean past steps a query attends to."]
    if failed:
        lines += ["", "Failed cells:", ""]
        lines += [f"- `{row['name']}`: {row['error']}" for row in failed]
    return "\n".join(lines) + "\n"


def plot_figure4(groups: list[Group], path: Path, title: str, metric: str = "success_greedy") -> None:
    """The paper's Figure 4: x the mean memory used, y success (IQM), one line per model with its CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    by_model: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        if group.memory is not None:
            by_model[group.model].append(group)
    for model, members in by_model.items():
        members.sort(key=lambda group: group.memory.iqm)
        x = np.array([group.memory.iqm for group in members])
        y = np.array([group.metrics[metric].iqm for group in members])
        low, high = (np.array([getattr(group.metrics[metric], end) for group in members]) for end in ("low", "high"))
        x_low, x_high = (np.array([getattr(group.memory, end) for group in members]) for end in ("low", "high"))
        # Bars as well as the band: a model with one setting (Expire-Span's learned memory) has no band to draw.
        bars = axes.errorbar(x, y, yerr=[y - low, high - y], xerr=[x - x_low, x_high - x], marker="o", capsize=3)
        bars.set_label(model)
        axes.fill_between(x, low, high, color=bars.lines[0].get_color(), alpha=0.2)
    axes.set_xlabel("memory used (mean past steps attended, per layer)")
    axes.set_ylabel(f"held-out {'greedy ' if metric.endswith('_greedy') else ''}success (IQM, 95% CI)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if by_model:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
