"""Speed and peak memory of a training step for every memory model, then MRBP against BPTT.

    python -m runners.bench_models                                   # CPU: spans 256..1024
    python -m runners.bench_models --device cuda --spans 1024 4096 16384 --window 512 --batch 8

Part 1: each model at the same width, batch and maximum span L (Transformer-XL mem_len = L,
Expire-Span and Adaptive-Span max_span = L, Compressive mem_len = L / 2 plus L / 2 steps compressed
at rate 4, Memformer its slots) carries its memory over windows of --window steps; one training
step is the forward and backward of a window with the memory carried in, after enough windows
without gradient to fill a memory of L steps. The input is a sequence where few positions matter
(one step in 100 carries a random vector, the others are zeros), and the spans are those of a
model trained on it: Expire-Span's span bias is set so that every span is --short-span steps
(w = 0, b = logit(short / L)); Adaptive-Span keeps its full span (a head cannot pick the few
positions, so it must reach as far as the farthest). Time and memory are printed as ratios to
Transformer-XL.

Part 2: Memformer trained over a horizon of H blocks, by plain back-propagation through time
(BPTT) and by memory replay back-propagation (MRBP), with a --vocab-way output head and cross-entropy;
peak memory and speed (blocks per second) of MRBP as ratios to BPTT.

Timing: the compared runs take turns step by step, and each figure is the fastest of --repeats
steps, so that load from other processes on a shared machine hits them alike. On CPU one torch
thread is the default: on a busy machine two threads spend most of their time waiting for each other.

Peak memory: on CUDA, torch.cuda.max_memory_allocated over one step. On CPU, the bytes of the
parameters and of what is held across the step (the carried state, the inputs) plus the growth of
the process's peak resident set over the step (VmHWM after it minus VmRSS before; the peak is reset
through /proc/self/clear_refs, freed heap is trimmed first, and while memory is measured glibc maps
every allocation above 64 KiB on its own, so a freed tensor leaves the resident set at once). CPU
figures include allocator overhead and are coarser than CUDA's; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

import memory_models
from memory_models.base import MemoryModel, MemoryRecord, MemoryState
from memory_models.mrbp import Segment, memory_replay_backward

COMPRESSION_RATE = 4
CUE_EVERY = 100  # one step in CUE_EVERY carries a random vector: few positions matter
PARTS = ("models", "mrbp")
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
SMALL_MMAP, LARGE_MMAP = 64 * 1024, 32 * 1024 * 1024  # while measuring memory / while timing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default: cpu)")
    parser.add_argument("--spans", type=int, nargs="+", default=[256, 512, 1024], help="maximum spans L")
    parser.add_argument("--models", nargs="+", default=list(memory_models.MODEL_NAMES), help="models to time")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--window", type=int, default=64, help="steps per training step (default: 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per figure; the fastest counts")
    parser.add_argument("--short-span", type=int, default=32, help="Expire-Span's emulated learned span")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="MRBP horizons")
    parser.add_argument("--block", type=int, default=64, help="steps per block of the MRBP benchmark")
    parser.add_argument("--segment-len", type=int, default=16, help="Memformer's segment length")
    parser.add_argument("--num-slots", type=int, default=8, help="Memformer's memory slots per layer")
    parser.add_argument("--vocab", type=int, default=256, help="output classes of the MRBP part's head (default 256)")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which tables to print (default both)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine, threads wait for each other)",
    )
    args = parser.parse_args(argv)
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        parser.error(f"--device must be cpu or cuda[:index], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    unknown = sorted(set(args.models) - set(memory_models.MODEL_NAMES))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; valid: {', '.join(memory_models.MODEL_NAMES)}")
    for name in ("spans", "d_model", "n_layers", "n_heads", "batch", "window", "repeats", "short_span"):
        _check_positive(parser, args, name)
    for name in ("horizons", "block", "segment_len", "num_slots", "vocab", "threads"):
        _check_positive(parser, args, name)
    if args.d_model % args.n_heads:
        parser.error(f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads})")
    return args


def _check_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> None:
    values = getattr(args, name)
    if min(values if isinstance(values, list) else [values]) < 1:
        parser.error(f"--{name.replace('_', '-')} must be at least 1, got {values}")


class PeakMemory:
    """Peak memory of the work between ``start`` and ``stop`` (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.libc = ctypes.CDLL("libc.so.6") if device.type == "cpu" else None
        if self.libc:
            self.libc.mallopt(M_MMAP_THRESHOLD, LARGE_MMAP)  # a fixed threshold, the same for every run

    def measure(self, work: Callable[[], None], held: list[torch.Tensor]) -> int:
        """Peak bytes while ``work`` runs; ``held``: the tensors alive across it (counted on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            work()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        self.libc.mallopt(M_MMAP_THRESHOLD, SMALL_MMAP)
        self.libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident set
        base = _status_kib("VmRSS")
        work()
        grown = 1024 * (_status_kib("VmHWM") - base)
        self.libc.mallopt(M_MMAP_THRESHOLD, LARGE_MMAP)
        return sum(t.numel() * t.element_size() for t in held) + grown


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _timed(work: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def model_options(name: str, span: int, args: argparse.Namespace) -> dict[str, object]:
    """The options that give ``name`` a maximum span of ``span`` steps, as the module docstring says."""
    if name == "transformer_xl":
        return {"mem_len": span}
    if name == "expire_span":
        short = min(args.short_span, span - 1)
        return {"max_span": span, "init_bias": math.log(short / (span - short))}
    if name == "adaptive_span":
        return {"max_span": span, "init_span": 1.0}
    if name == "compressive":
        half = max(span // 2, 1)
        return {"mem_len": half, "cmem_len": max(half // COMPRESSION_RATE, 1), "compression_rate": COMPRESSION_RATE}
    if name == "memformer":
        return {"num_slots": args.num_slots, "segment_len": args.segment_len}
    return {}


class ModelRun:
    """One model carrying its memory over windows of a cue sequence, one training step at a time."""

    def __init__(self, name: str, span: int, args: argparse.Namespace):
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        options = model_options(name, span, args)
        self.model = memory_models.build(
            name, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, **options
        ).to(self.device)
        self.generator = torch.Generator().manual_seed(0)
        self.shape = (args.batch, args.window, args.d_model)
        self.first = torch.zeros(args.batch, args.window, dtype=torch.bool, device=self.device)
        self.state = self.model.initial_state(args.batch, self.device)
        with torch.no_grad():  # fill a memory of `span` steps (one long episode)
            for _ in range(math.ceil(span / args.window) + 1):
                _, self.state, _ = self.model(self.cues(), self.state, self.first)
        self.x = self.cues()
        self.record = self.step()  # not timed: lazy initialisation
        self.times: list[float] = []

    def cues(self) -> torch.Tensor:
        """B x window x D: zeros except one step in CUE_EVERY."""
        x = torch.zeros(self.shape)
        cues = torch.rand(self.shape[:2], generator=self.generator) < 1 / CUE_EVERY
        x[cues] = torch.randn(int(cues.sum()), self.shape[2], generator=self.generator)
        return x.to(self.device)

    def step(self) -> MemoryRecord:
        """Forward and backward of a window with the memory carried in."""
        out, state, record = self.model(self.x, self.state, self.first)
        (out.pow(2).mean() + record.aux_loss).backward()
        self.model.zero_grad(set_to_none=True)
        self.state = state.detach()
        return record

    def time_step(self) -> None:
        self.times.append(_timed(self.step, self.device))

    def peak(self, meter: PeakMemory) -> int:
        return meter.measure(self.step, list(self.model.parameters()) + self.state.tensors() + [self.x])


def bench_models(args: argparse.Namespace) -> list[str]:
    meter = PeakMemory(torch.device(args.device))
    names = ["transformer_xl", *(n for n in args.models if n != "transformer_xl")]
    lines = [
        "| model | span L | ms / step | peak MiB | time vs XL | memory vs XL | mean attended |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for span in tqdm(args.spans, desc="spans"):
        runs = {name: ModelRun(name, span, args) for name in names}
        for _ in range(args.repeats):
            for run in runs.values():
                run.time_step()
        figures = {name: (min(run.times), run.peak(meter)) for name, run in runs.items()}
        base_time, base_peak = figures.get("transformer_xl", (math.nan, math.nan))
        for name, (seconds, peak) in figures.items():
            attended = float(runs[name].record.memory_size.mean())
            lines.append(
                f"| {name} | {span} | {1000 * seconds:.1f} | {peak / 2**20:.1f} | {seconds / base_time:.2f} "
                f"| {peak / base_peak:.2f} | {attended:.0f} |"
            )
    return lines


def bptt_backward(model: MemoryModel, state: MemoryState, segments: list[Segment]) -> None:
    """Plain back-propagation through time: one graph over the whole horizon."""
    total = 0.0
    for segment in segments:
        out, state, record = model(segment.x, state, segment.first)
        total = total + segment.loss_fn(out, record)
    total.backward()


UPDATES = {"bptt": bptt_backward, "mrbp": memory_replay_backward}


def bench_mrbp(args: argparse.Namespace) -> list[str]:
    device = torch.device(args.device)
    meter = PeakMemory(device)
    torch.manual_seed(0)
    model = memory_models.build(
        "memformer",
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        num_slots=args.num_slots,
        segment_len=args.segment_len,
    ).to(device)
    head = torch.nn.Linear(args.d_model, args.vocab).to(device)
    lines = [
        "| horizon H | BPTT ms / block | MRBP ms / block | BPTT peak MiB | MRBP peak MiB | MRBP speed vs BPTT "
        "| MRBP memory vs BPTT |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for horizon in tqdm(args.horizons, desc="horizons"):
        segments = _lm_segments(horizon, head, args, device)
        held = [*model.parameters(), *head.parameters(), *(s.x for s in segments)]

        def update(method: str, segments: list[Segment] = segments) -> None:
            UPDATES[method](model, model.initial_state(args.batch, device).detach(), segments)
            model.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)

        times: dict[str, list[float]] = {"bptt": [], "mrbp": []}
        for method in times:
            update(method)  # not timed: lazy initialisation
        for _ in range(args.repeats):
            for method, method_times in times.items():
                method_times.append(_timed(lambda method=method: update(method), device))
        bptt_s, mrbp_s = min(times["bptt"]), min(times["mrbp"])
        bptt_peak, mrbp_peak = (meter.measure(lambda m=m: update(m), held) for m in ("bptt", "mrbp"))
        lines.append(
            f"| {horizon} | {1000 * bptt_s / horizon:.1f} | {1000 * mrbp_s / horizon:.1f} "
            f"| {bptt_peak / 2**20:.1f} | {mrbp_peak / 2**20:.1f} | {bptt_s / mrbp_s:.2f} "
            f"| {mrbp_peak / bptt_peak:.2f} |"
        )
    return lines


def _lm_segments(horizon: int, head: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> list[Segment]:
    """H blocks of random inputs and byte targets; the loss is the mean cross-entropy over the horizon."""
    generator = torch.Generator().manual_seed(horizon)
    segments = []
    for _ in range(horizon):
        x = torch.randn(args.batch, args.block, args.d_model, generator=generator).to(device)
        targets = torch.randint(0, args.vocab, (args.batch, args.block), generator=generator).to(device)
        first = torch.zeros(args.batch, args.block, dtype=torch.bool, device=device)

        def loss_fn(out: torch.Tensor, record: MemoryRecord, targets: torch.Tensor = targets) -> torch.Tensor:
            logits = head(out)  # B x T x vocab
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten()) / horizon + record.aux_loss

        segments.append(Segment(x, first, loss_fn))
    return segments


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine(device)}; torch {torch.__version__}")
    print(
        f"d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads, batch {args.batch}, "
        f"window {args.window}; Expire-Span spans set short ({args.short_span} steps) to emulate a model "
        f"trained on a sequence where few positions matter; Adaptive-Span at its full span; "
        f"Memformer {args.num_slots} slots, segment {args.segment_len}"
    )
    if "models" in args.parts:
        print("\n".join(bench_models(args)))
    if "mrbp" in args.parts:
        print(f"\nMemformer, MRBP vs BPTT: blocks of {args.block} steps, batch {args.batch}, {args.vocab}-way head")
        print("\n".join(bench_mrbp(args)))


if __name__ == "__main__":
    main()
