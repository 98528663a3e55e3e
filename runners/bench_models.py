"""Speed and peak memory of a training step for every memory model, then MRBP against BPTT.

    python -m runners.bench_models                                   # CPU: spans 512..2048
    python -m runners.bench_models --device cuda --spans 1024 4096 16384 --window 512 --batch 8

Part 1: each model at the same width, batch and maximum span L (Transformer-XL mem_len = L,
Expire-Span and Adaptive-Span max_span = L, Compressive mem_len = L / 2 plus L / 2 steps compressed
at rate 4, Memformer its slots) carries its memory over windows of --window steps; one training
step is the forward and backward of a window with the memory carried in, after enough windows
without gradient to fill a memory of L steps. The input is a sequence where few positions matter
(one step in 100 carries a random vector, the others zeros), and the spans are those of a model
trained on it: Expire-Span's span bias is set so that every span is --short-span steps (w = 0,
b = logit(short / L)), Adaptive-Span keeps its full span (a head cannot pick the few positions, so
it must reach as far as the farthest). Time and memory are printed as ratios to Transformer-XL,
measured side by side in the same run.

Part 2: Memformer trained over a horizon of H blocks, by plain back-propagation through time
(BPTT) and by memory replay back-propagation (MRBP), with a byte-level output head and
cross-entropy loss; peak memory and speed (blocks per second) of MRBP as ratios to BPTT.

Peak memory: on CUDA, torch.cuda.max_memory_allocated over the measured steps. On CPU, the bytes
of the parameters and the carried state plus the growth of the process's peak resident set over
the steps (VmHWM after them minus VmRSS before; the peak is reset through /proc/self/clear_refs,
freed heap is trimmed first, and glibc is told to map every allocation above 64 KiB on its own so
that freed tensors leave the resident set). CPU figures therefore include allocator overhead and
are noisier than CUDA's; ratios measured in one run are what to compare.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import platform
import statistics
import time
import torch
import torch.nn.functional as F
from tqdm import tqdm

import memory_models
from memory_models.base import MemoryModel, MemoryState
from memory_models.mrbp import Segment, memory_replay_backward

COMPRESSION_RATE = 4
CUE_EVERY = 100  # one step in CUE_EVERY carries a random vector: few positions matter
VOCAB = 256  # output classes of the MRBP benchmark's head


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default: cpu)")
    parser.add_argument("--spans", type=int, nargs="+", default=[512, 1024, 2048], help="maximum spans L")
    parser.add_argument("--models", nargs="+", default=list(memory_models.MODEL_NAMES), help="models to time")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--window", type=int, default=128, help="steps per training step (default: 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per measurement")
    parser.add_argument("--short-span", type=int, default=32, help="Expire-Span's emulated learned span")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="MRBP horizons")
    parser.add_argument("--block", type=int, default=64, help="steps per block of the MRBP benchmark")
    parser.add_argument("--segment-len", type=int, default=16, help="Memformer's segment length")
    parser.add_argument("--num-slots", type=int, default=8, help="Memformer's memory slots per layer")
    parser.add_argument("--skip-mrbp", action="store_true", help="only the per-model table")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        parser.error(f"--device must be cpu or cuda[:index], got {args.device!r}")
    unknown = sorted(set(args.models) - set(memory_models.MODEL_NAMES))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; valid: {', '.join(memory_models.MODEL_NAMES)}")
    positive = ("spans", "d_model", "n_layers", "n_heads", "batch", "window", "repeats", "short_span")
    positive += ("horizons", "block", "segment_len", "num_slots")
    for name in positive:
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {values}")
    return args


class PeakMemory:
    """Peak memory of the work between ``start`` and ``stop`` (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.libc = None
        if device.type == "cpu":
            self.libc = ctypes.CDLL("libc.so.6")
            m_mmap_threshold = -3
            self.libc.mallopt(m_mmap_threshold, 64 * 1024)

    def start(self, held: int) -> None:
        """held: bytes of the tensors alive before the work (parameters and state), counted on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self.held = held
        self.libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident set
        self.base = _status_kib("VmRSS")

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        return self.held + 1024 * (_status_kib("VmHWM") - self.base)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _state_tensors(state: MemoryState) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    state.apply(lambda t: found.append(t) or t)
    return found


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def cue_inputs(args: argparse.Namespace, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """B x window x D: zeros except one step in CUE_EVERY."""
    x = torch.zeros(args.batch, args.window, args.d_model)
    cues = torch.rand(args.batch, args.window, generator=generator) < 1 / CUE_EVERY
    x[cues] = torch.randn(int(cues.sum()), args.d_model, generator=generator)
    return x.to(device)


def bench_model(name: str, span: int, args: argparse.Namespace, meter: PeakMemory) -> tuple[float, int, float]:
    """Median seconds per training step, peak bytes, and the mean memory size |C_t| of the last step."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = memory_models.build(
        name, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, **model_options(name, span, args)
    ).to(device)
    generator = torch.Generator().manual_seed(0)
    state = model.initial_state(args.batch, device)
    first = torch.zeros(args.batch, args.window, dtype=torch.bool, device=device)
    with torch.no_grad():  # fill a memory of `span` steps (one long episode)
        for _ in range(math.ceil(span / args.window) + 1):
            _, state, _ = model(cue_inputs(args, device, generator), state, first)
    inputs = [cue_inputs(args, device, generator) for _ in range(args.repeats + 1)]
    state = train_step(model, inputs[0], state, first)  # not timed: lazy initialisation
    meter.start(_bytes(list(model.parameters()) + _state_tensors(state)))
    times = []
    for x in inputs[1:]:
        _synchronize(device)
        start = time.perf_counter()
        state = train_step(model, x, state, first)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    peak = meter.stop()
    with torch.no_grad():
        _, _, record = model(inputs[0], state, first)
    return statistics.median(times), peak, float(record.memory_size.mean())


def train_step(model: MemoryModel, x: torch.Tensor, state: MemoryState, first: torch.Tensor) -> MemoryState:
    """Forward and backward of one window with the memory carried in; returns the detached memory."""
    out, state, record = model(x, state, first)
    (out.pow(2).mean() + record.aux_loss).backward()
    model.zero_grad(set_to_none=True)
    return state.detach()


def bench_models(args: argparse.Namespace) -> list[str]:
    meter = PeakMemory(torch.device(args.device))
    names = ["transformer_xl", *(n for n in args.models if n != "transformer_xl")]
    available = [n for n in names if _importable(n)]
    notes = [f"{n}: not written yet, skipped" for n in names if n not in available]
    results: dict[tuple[str, int], tuple[float, int, float]] = {}
    jobs = [(name, span) for span in args.spans for name in available]
    for name, span in tqdm(jobs, desc="models", unit="run"):
        results[name, span] = bench_model(name, span, args, meter)

    lines = [
        "| model | span L | ms / step | peak MiB | time vs XL | memory vs XL | mean attended |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for span in args.spans:
        xl_time, xl_peak, _ = results.get(("transformer_xl", span), (math.nan, 0, 0.0))
        for name in available:
            seconds, peak, size = results[name, span]
            lines.append(
                f"| {name} | {span} | {1000 * seconds:.1f} | {peak / 2**20:.1f} | {seconds / xl_time:.2f} "
                f"| {peak / xl_peak if xl_peak else math.nan:.2f} | {size:.0f} |"
            )
    return lines + notes


def _importable(name: str) -> bool:
    try:
        memory_models.model_class(name)
    except ModuleNotFoundError:
        return False
    return True


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
    head = torch.nn.Linear(args.d_model, VOCAB).to(device)
    lines = [
        "| horizon H | BPTT ms / block | MRBP ms / block | BPTT peak MiB | MRBP peak MiB | MRBP speed vs BPTT "
        "| MRBP memory vs BPTT |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for horizon in tqdm(args.horizons, desc="mrbp", unit="horizon"):
        segments = _lm_segments(horizon, head, args, device)
        figures = {}
        for method in ("bptt", "mrbp"):
            figures[method] = _time_update(method, model, segments, args, device, meter)
        (bptt_s, bptt_peak), (mrbp_s, mrbp_peak) = figures["bptt"], figures["mrbp"]
        lines.append(
            f"| {horizon} | {1000 * bptt_s / horizon:.1f} | {1000 * mrbp_s / horizon:.1f} | {bptt_peak / 2**20:.1f} "
            f"| {mrbp_peak / 2**20:.1f} | {bptt_s / mrbp_s:.2f} | {mrbp_peak / bptt_peak:.2f} |"
        )
    return lines


def _lm_segments(
    horizon: int, head: torch.nn.Module, args: argparse.Namespace, device: torch.device
) -> list[Segment]:
    generator = torch.Generator().manual_seed(horizon)
    segments = []
    for _ in range(horizon):
        x = torch.randn(args.batch, args.block, args.d_model, generator=generator).to(device)
        targets = torch.randint(0, VOCAB, (args.batch, args.block), generator=generator).to(device)
        first = torch.zeros(args.batch, args.block, dtype=torch.bool, device=device)

        def loss_fn(out: torch.Tensor, record: memory_models.MemoryRecord, targets: torch.Tensor = targets):
            logits = head(out)  # B x T x VOCAB
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten()) / horizon + record.aux_loss

        segments.append(Segment(x, first, loss_fn))
    return segments


def _time_update(
    method: str,
    model: MemoryModel,
    segments: list[Segment],
    args: argparse.Namespace,
    device: torch.device,
    meter: PeakMemory,
) -> tuple[float, int]:
    """Median seconds of one update over the horizon, and its peak memory."""
    update = UPDATES[method]
    update(model, model.initial_state(args.batch, device).detach(), segments)  # not timed: lazy initialisation
    meter.start(_bytes(list(model.parameters()) + [s.x for s in segments]))
    times = []
    for _ in range(args.repeats):
        state = model.initial_state(args.batch, device).detach()
        _synchronize(device)
        start = time.perf_counter()
        update(model, state, segments)
        _synchronize(device)
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times), meter.stop()


def bptt_backward(model: MemoryModel, state: MemoryState, segments: list[Segment]) -> None:
    """Plain back-propagation through time: one graph over the whole horizon."""
    total = 0.0
    for segment in segments:
        out, state, record = model(segment.x, state, segment.first)
        total = total + segment.loss_fn(out, record)
    total.backward()


UPDATES = {"bptt": bptt_backward, "mrbp": memory_replay_backward}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model_name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model_name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model_name}, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine(device)}; torch {torch.__version__}")
    print(
        f"d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads, batch {args.batch}, "
        f"window {args.window}; Expire-Span spans set short ({args.short_span} steps) to emulate a trained "
        f"model; Adaptive-Span at its full span; Memformer {args.num_slots} slots, segment {args.segment_len}"
    )
    print("\n".join(bench_models(args)))
    if not args.skip_mrbp:
        print(f"\nMemformer, MRBP vs BPTT: blocks of {args.block} steps, batch {args.batch}, {VOCAB}-way head")
        print("\n".join(bench_mrbp(args)))


if __name__ == "__main__":
    main()
