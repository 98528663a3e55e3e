"""Train a memory model on a sequence task: byte-level LM (text, enwik8), long copy, object collision,
word-level WikiText-103 and character-level PG-19.

    python runners/train_lm.py --task copy --model expire_span
    python runners/train_lm.py --task enwik8 --data enwik8.zip --model transformer_xl
    torchrun --nproc_per_node 2 runners/train_lm.py --task text --data book.txt --model lstm
    python runners/train_lm.py --task wikitext103 --data wikitext-103/ --model expire_span
    python runners/train_lm.py --task pg19 --data pg19/ --model transformer_xl

Each task's preset in configs/ (text: lm_text_quick.toml, enwik8: lm_enwik8_small.toml, copy:
copy_quick.toml, collision: collision_quick.toml, wikitext103: wikitext103_quick.toml, pg19:
pg19_quick.toml) is both its default settings and the schema a
--config file (configs/copy.toml, configs/collision.toml: the paper's scale) and --set overrides
must fit. B streams per rank are read block by block, in order, with the memory carried from block
to block: detached between blocks, except Memformer, which back-propagates through
``training.mrbp_horizon`` blocks with memory replay back-propagation (one update per horizon).
The learning rate warms up linearly, then decays on a cosine to zero at ``training.steps``.
Checkpoints hold the data position and the memory cache, so --resume continues exactly.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import configs
import memory_models
from memory_models import MemoryRecord, MemoryState
from memory_models.mrbp import Segment, memory_replay_backward
from sequence_tasks.batch import Batch, BlockStream
from sequence_tasks.language_model import SequenceModel
from sequence_tasks.tasks import TASK_NAMES, Task, build_task
from training import strict_json
from training.checkpoint import (
    CheckpointError,
    describe_checkpoint,
    from_plain,
    load_checkpoint,
    remove_stale_temps,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    to_plain,
)
from training.config import resolve
from training.distributed import World, close_world, init_world
from training.divergence import DivergenceGuard
from training.errors import RunStopped
from training.paths import check_writable_dir, create_run_directory

PRESETS = {
    "text": "lm_text_quick.toml",
    "enwik8": "lm_enwik8_small.toml",
    "copy": "copy_quick.toml",
    "collision": "collision_quick.toml",
    "wikitext103": "wikitext103_quick.toml",
    "pg19": "pg19_quick.toml",
}
MODELS = ("transformer_xl", "expire_span", "adaptive_span", "compressive", "memformer", "lstm", "gru")
REPLAY_MODELS = ("memformer",)  # trained with memory replay back-propagation over the horizon


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument(
        "--data", help="the text file (text, enwik8: raw or zip) or folder (wikitext103, pg19); never downloaded"
    )
    parser.add_argument("--config", help="a TOML file overriding the task's preset, e.g. configs/copy.toml")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, help="stop after this many updates (default training.steps, the length of the LR schedule)"
    )
    parser.add_argument(
        "--logdir",
        help="TensorBoard logs, checkpoint.pt and summary.json (default runs/lm/TASK-MODEL); a new run never shares "
        "one: when LOGDIR exists (another run's), it writes to LOGDIR-2, LOGDIR-3, ...",
    )
    parser.add_argument("--resume", action="store_true", help="continue from LOGDIR/checkpoint.pt")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    args.logdir = Path(args.logdir or f"runs/lm/{args.task}-{args.model}")
    return args


def warmup_cosine(warmup: int, total: int):
    """LR multiplier: linear from 1/warmup to 1 over ``warmup`` updates, then a cosine down to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def plain_step(model: torch.nn.Module, batch: Batch, state: MemoryState) -> tuple[MemoryState, MemoryRecord, dict]:
    """One block forward and backward; the memory is carried on without its graph (truncated BPTT)."""
    logits, state, record = model(batch.tokens, state, batch.first)  # B x T x vocab_out (or D, adaptive softmax)
    sequence_model = model.module if isinstance(model, DistributedDataParallel) else model
    loss, stats = sequence_model.loss(logits, batch.targets, batch.mask)
    (loss + record.aux_loss).backward()
    return state.detach(), record, stats


def replay_step(
    model: SequenceModel, batches: list[Batch], state: MemoryState
) -> tuple[MemoryState, MemoryRecord, dict]:
    """Back-propagate the mean loss of ``batches`` through the memory across all of them (MRBP)."""
    stats: dict[int, dict] = {}
    records: dict[int, MemoryRecord] = {}

    def segment_loss(out, record, index: int, batch: Batch):
        loss, stats[index] = model.loss(model.outputs(out), batch.targets, batch.mask)
        records[index] = record
        return (loss + record.aux_loss) / len(batches)

    segments = [
        Segment(model.inputs(b.tokens), b.first, functools.partial(segment_loss, index=k, batch=b))
        for k, b in enumerate(batches)
    ]
    result = memory_replay_backward(model.memory, state, segments)
    summed = {key: sum(s[key] for s in stats.values()) for key in ("nll", "correct", "count")}
    return result.state, records[len(batches) - 1], summed


def average_gradients(model: torch.nn.Module, world: World) -> None:
    """What DistributedDataParallel does in backward, for the replay path that calls the model piecewise."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world.world_size


def metrics(metric: str, nll: float, correct: float, count: float) -> dict[str, float | None]:
    """The mean loss in nats and the task's metric from summed statistics; None for both when no position was
    scored (a copy split too short to reach a query), where 0.0 would read as a result."""
    if count == 0:
        return {"loss": None, metric: None}
    loss = nll / count
    values = {"loss": loss, "bpc": loss / math.log(2), "accuracy": correct / count}
    values["ppl"] = math.exp(loss) if loss < math.log(sys.float_info.max) else math.inf
    values["error"] = 1.0 - values["accuracy"]
    return {"loss": loss, metric: values[metric]}


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, split: str, config: dict, world: World) -> dict[str, float]:
    """The split from its start with empty memory: all of it for text (or ``eval_blocks`` blocks when > 0)."""
    batch_size, limit = config["training"]["batch_size"], config["training"]["eval_blocks"]
    stream = task.make_stream(split, batch_size)
    state = model.memory.initial_state(batch_size, world.device)
    totals = torch.zeros(3, device=world.device)  # nll, correct, count
    model.eval()
    blocks = 0
    while limit <= 0 or blocks < limit:
        batch = stream.next_block()
        if batch is None:
            break
        batch = batch.to(world.device)
        logits, state, _ = model(batch.tokens, state, batch.first)
        _, stats = model.loss(logits, batch.targets, batch.mask)
        totals += torch.stack([stats["nll"], stats["correct"], stats["count"]])
        blocks += 1
    model.train()
    if world.distributed:
        dist.all_reduce(totals)
    return metrics(task.metric, *totals.tolist())


def peak_memory_mb(device: torch.device) -> float:
    """CUDA peak allocation on a GPU; the process's peak resident size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(path: Path, payload: dict[str, Any], local: dict[str, Any], world: World) -> None:
    """One checkpoint for the whole world: shared weights and optimiser, plus every rank's data and memory."""
    ranks = [None] * world.world_size
    if world.distributed:
        dist.all_gather_object(ranks, local)
    else:
        ranks = [local]
    if world.is_main:
        save_checkpoint(path, {**payload, "world_size": world.world_size, "ranks": ranks})


def check_training(task: str, training: dict[str, Any]) -> None:
    """Settings the TOML types alone cannot rule out."""
    for key in ("batch_size", "block", "steps", "log_every", "mrbp_horizon"):
        if training[key] < 1:
            raise ValueError(f"training.{key} must be at least 1, got {training[key]}")
    for key in ("warmup", "eval_every", "eval_blocks", "checkpoint_every"):
        if training[key] < 0:
            raise ValueError(f"training.{key} must be 0 or more, got {training[key]}")
    for key in ("lr", "clip"):
        if training[key] <= 0:
            raise ValueError(f"training.{key} must be positive, got {training[key]}")
    if task in ("copy", "collision") and training["eval_blocks"] < 1:
        raise ValueError(f"training.eval_blocks must be at least 1 for --task {task} (its data is endless)")


def log_interval(
    writer: SummaryWriter,
    step: int,
    values: dict[str, float],
    sizes: list[float],
    record: MemoryRecord,
    lr: float,
    batch_ms: float,
    device: torch.device,
) -> None:
    """TensorBoard: the task metric, memory size per layer, expire-span histograms, time and peak memory."""
    for name, value in values.items():
        if value is not None:
            writer.add_scalar(f"train/{name}", value, step)
    for layer, size in enumerate(sizes):
        writer.add_scalar(f"memory/size_layer{layer}", size, step)
    if record.spans is not None:
        for layer, spans in enumerate(record.spans.detach().float().cpu()):  # B x T per layer
            writer.add_histogram(f"memory/spans_layer{layer}", spans, step)
    writer.add_scalar("train/lr", lr, step)
    writer.add_scalar("perf/time_per_batch_ms", batch_ms, step)
    writer.add_scalar("perf/peak_memory_mb", peak_memory_mb(device), step)


CHECKPOINT_KEYS = ("task", "model_name", "step", "config", "model", "optimizer", "scheduler", "world_size", "ranks")


def load_lm_checkpoint(path: Path, device: torch.device, task: str, model: str) -> dict[str, Any]:
    """The train_lm.py checkpoint at ``path`` of ``--task task --model model``; a CheckpointError line for any other."""
    checkpoint = load_checkpoint(path, map_location=device)
    if not set(CHECKPOINT_KEYS) <= set(checkpoint):
        raise CheckpointError(f"{str(path)!r} is {describe_checkpoint(checkpoint)}, not a train_lm.py checkpoint")
    if (checkpoint["task"], checkpoint["model_name"]) != (task, model):
        raise CheckpointError(
            f"{str(path)!r} is a --task {checkpoint['task']} --model {checkpoint['model_name']} checkpoint; "
            f"resume it with those, not --task {task} --model {model}"
        )
    return checkpoint


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The task's preset, then --config, then --set overrides, each checked against the preset."""
    return resolve(Path(configs.__file__).parent / PRESETS[args.task], args.config, args.set)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = resolve_config(args)
    world = init_world(args.device)
    try:
        return train(args, config, world)[1]
    finally:
        close_world(world)


def train(args: argparse.Namespace, config: dict[str, Any], world: World) -> tuple[SequenceModel, dict[str, Any]]:
    """Train (or resume) to ``args.steps``, evaluate on valid and test; return the model and the summary."""
    training, device = config["training"], world.device
    check_training(args.task, training)
    check_writable_dir(args.logdir, "--logdir")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    task = build_task(args.task, config["data"], training["block"], args.data, args.seed, world.rank, world.world_size)
    memory = memory_models.build(args.model, **config["model"], **config["models"][args.model])
    model = SequenceModel(memory, task.vocab_in, task.vocab_out, **config.get("output", {})).to(device)
    replay = args.model in REPLAY_MODELS
    # Every rank built the same initial weights from the same seed; the replay path, which calls the
    # model piecewise, averages its gradients itself (average_gradients) instead of through DDP.
    ddp = DistributedDataParallel(model) if world.distributed and not replay else model
    optimizer = torch.optim.Adam(model.parameters(), lr=training["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(training["warmup"], training["steps"]))
    horizon = training["mrbp_horizon"] if replay else 1
    stream: BlockStream = task.make_stream("train", training["batch_size"])
    for split in ("valid", "test"):
        task.make_stream(split, training["batch_size"])  # a split too small for the blocks fails now, not later
    state = model.memory.initial_state(training["batch_size"], device)
    torch.manual_seed(args.seed + world.rank)  # each rank its own dropout and memory-shortening draws

    step, checkpoint_path = 0, args.logdir / "checkpoint.pt"
    if args.resume:
        checkpoint = load_lm_checkpoint(checkpoint_path, device, args.task, args.model)
        if checkpoint["config"] != config:
            raise ValueError(f"--resume needs the config the checkpoint was trained with: {checkpoint['config']}")
        if checkpoint["world_size"] != world.world_size:
            raise ValueError(
                f"the checkpoint was written by {checkpoint['world_size']} processes, not {world.world_size}"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        step, local = checkpoint["step"], checkpoint["ranks"][world.rank]
        stream.load_state_dict(from_plain(local["stream"]))
        state = local["memory"].to(device)
        restore_rng_states(local["rng"])

    stop = args.steps or training["steps"]
    if stop < step:
        raise ValueError(f"--steps {stop} is below the checkpoint's step {step}: the run is already past it")
    if world.is_main and args.resume:
        remove_stale_temps(checkpoint_path)
    elif world.is_main:
        claimed = create_run_directory(args.logdir.parent, args.logdir.name)
        if claimed != args.logdir:
            print(
                f"note: {args.logdir} holds another run (--resume continues it); this one writes to {claimed}",
                file=sys.stderr,
            )
        args.logdir, checkpoint_path = claimed, claimed / "checkpoint.pt"
    # A resumed run drops the events past its checkpoint that the run before it logged: no step appears twice.
    writer = SummaryWriter(args.logdir, purge_step=step + 1 if args.resume else None) if world.is_main else None
    progress = tqdm(total=stop, initial=step, disable=not world.is_main, desc=f"{args.task}/{args.model}")
    totals = torch.zeros(3, device=device)  # nll, correct, count since the last log
    memory_sum = torch.zeros(model.memory.n_layers, device=device)  # summed per-layer memory sizes
    run_memory_sum, run_steps, last_sizes = torch.zeros_like(memory_sum), 0, []
    interval_start, interval_steps, run_time = time.perf_counter(), 0, 0.0
    if args.resume:  # the interval being summed when the checkpoint was written, so the next log is exact
        log = checkpoint["ranks"][world.rank]["log"]
        totals, memory_sum, run_memory_sum = (log[key].to(device) for key in ("totals", "memory_sum", "run_memory"))
        interval_steps, run_steps, run_time, last_sizes = (log[key] for key in ("steps", "run_steps", "time", "sizes"))
    cause = (
        f"the learning rate (training.lr = {training['lr']:g}) is too high, or the gradient clip "
        f"(training.clip = {training['clip']:g}) too loose, for these settings"
    )
    guard = DivergenceGuard(checkpoint_path, cause, distributed=world.distributed)
    while step < stop:
        batches = [stream.next_block().to(device) for _ in range(horizon)]
        if replay:
            state, record, stats = replay_step(model, batches, state)
            if world.distributed:
                average_gradients(model, world)
        else:
            state, record, stats = plain_step(ddp, batches[0], state)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), training["clip"])
        optimizer.step()
        memory_models.clamp_parameters(model)  # Adaptive-Span's span ratios back into [0, 1], as the authors do
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        guard.check(step, {"summed nll": stats["nll"], "grad norm": grad_norm}, model)
        interval_steps += 1
        totals += torch.stack([stats["nll"], stats["correct"], stats["count"]])
        memory_sum += record.memory_size.detach()
        progress.update()

        if step % training["log_every"] == 0 or step == stop:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - interval_start
            run_time, run_steps = run_time + elapsed, run_steps + interval_steps
            run_memory_sum += memory_sum
            values = metrics(task.metric, *totals.tolist())
            last_sizes = (memory_sum / interval_steps).tolist()
            progress.set_postfix(values)
            if writer is not None:
                batch_ms = 1000 * elapsed / interval_steps
                log_interval(writer, step, values, last_sizes, record, scheduler.get_last_lr()[0], batch_ms, device)
            totals.zero_()
            memory_sum.zero_()
            interval_start, interval_steps = time.perf_counter(), 0

        if training["eval_every"] > 0 and step % training["eval_every"] == 0 and step < stop:
            for name, value in evaluate(model, task, "valid", config, world).items():
                if writer is not None:
                    writer.add_scalar(f"valid/{name}", value, step)
            interval_start = time.perf_counter()
        if step == stop or (training["checkpoint_every"] > 0 and step % training["checkpoint_every"] == 0):
            payload = {
                "task": args.task,
                "model_name": args.model,
                "step": step,
                "config": config,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            log = {"totals": totals.cpu(), "memory_sum": memory_sum.cpu(), "run_memory": run_memory_sum.cpu()}
            log.update(steps=interval_steps, run_steps=run_steps, time=run_time, sizes=last_sizes)
            local = {"rng": rng_states(), "stream": to_plain(stream.state_dict()), "memory": state.to("cpu")}
            local["log"] = log
            save(checkpoint_path, payload, local, world)
            interval_start = time.perf_counter()
    progress.close()

    summary: dict[str, Any] = {
        "task": args.task,
        "model": args.model,
        "step": step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "valid": evaluate(model, task, "valid", config, world),
        "test": evaluate(model, task, "test", config, world),
        "time_per_batch_ms": 1000 * run_time / max(run_steps, 1),
        "peak_memory_mb": peak_memory_mb(device),
        "memory_size": (run_memory_sum / max(run_steps, 1)).tolist(),  # per layer, mean over the run
        "final_memory_size": last_sizes,  # per layer, mean over the last log interval
    }
    if writer is not None:
        for split in ("valid", "test"):
            for name, value in summary[split].items():
                if value is not None:
                    writer.add_scalar(f"{split}/{name}", value, step)
            if summary[split]["loss"] is None:
                print(f"note: the {split} evaluation scored no position; raise training.eval_blocks", file=sys.stderr)
        writer.close()
        (args.logdir / "summary.json").write_text(strict_json.dumps(summary, indent=2))
        print(strict_json.dumps(summary))
    return model, summary


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, RunStopped) as error:  # a clear message, not a traceback
        sys.exit(f"error: {error}")
