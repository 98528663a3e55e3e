"""runners/train_lm.py: a short run per task and per model, exact resume, bad input, two-process torchrun."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import memory_models
from runners import train_lm
from sequence_tasks.text import DataError
from tests.two_ranks import train_lm_on_two_ranks
from training.checkpoint import from_plain, load_checkpoint
from training.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--set",
    "model.d_model=16",
    "--set",
    "model.n_heads=2",
    "--set",
    "training.batch_size=2",
    "--set",
    "training.block=16",
    "--set",
    "training.steps=2",
    "--set",
    "training.log_every=1",
    "--set",
    "training.eval_every=0",
    "--set",
    "training.eval_blocks=2",
    "--set",
    "training.checkpoint_every=0",
    "--set",
    "training.mrbp_horizon=2",
]
TASK_DATA = {
    "copy": ["--set", "data.min_distance=4", "--set", "data.distance=8"],
    "collision": ["--set", "data.grid=4", "--set", "training.eval_blocks=6"],  # its valid split scores from block 6
    "text": ["--set", "data.valid_fraction=0.2", "--set", "data.test_fraction=0.2"],
    "enwik8": ["--set", "data.train_bytes=600", "--set", "data.valid_bytes=200", "--set", "data.test_bytes=200"],
}


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "book.txt"
    path.write_bytes(b"the quick brown fox jumps over the lazy dog. " * 23)  # 1035 bytes
    return path


def arguments(tmp_path: Path, task: str, model: str, *extra: str, name: str = "run", data: Path | None = None):
    args = ["--task", task, "--model", model, "--device", "cpu", "--logdir", str(tmp_path / name)]
    args += TINY + TASK_DATA[task] + list(extra)
    return args + (["--data", str(data)] if data else [])


@pytest.mark.parametrize("task", ["text", "enwik8", "copy", "collision"])
def test_short_run_per_task(tmp_path, text_file, task):
    data = text_file if task in ("text", "enwik8") else None
    summary = train_lm.main(arguments(tmp_path, task, "lstm", data=data))
    metric = {"text": "bpc", "enwik8": "bpc", "copy": "accuracy", "collision": "error"}[task]
    assert summary["step"] == 2 and set(summary["test"]) == {"loss", metric}
    assert math.isfinite(summary["test"]["loss"]) and math.isfinite(summary["valid"][metric])
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "summary.json").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run").iterdir())


@pytest.mark.parametrize("model", ["transformer_xl", "expire_span", "adaptive_span", "compressive", "memformer"])
def test_short_run_per_model(tmp_path, model):
    summary = train_lm.main(arguments(tmp_path, "collision", model))
    assert summary["step"] == 2 and math.isfinite(summary["valid"]["loss"]) and math.isfinite(summary["test"]["error"])
    assert len(summary["memory_size"]) == 2 and summary["time_per_batch_ms"] > 0


@pytest.mark.parametrize("model", ["expire_span", "memformer"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, model):
    common = ["--set", "training.steps=4", "--set", "model.dropout=0.1"]
    whole = train_lm.main(arguments(tmp_path, "copy", model, *common, name="whole"))
    train_lm.main(arguments(tmp_path, "copy", model, *common, "--steps", "2", name="split"))
    resumed = train_lm.main(arguments(tmp_path, "copy", model, *common, "--resume", name="split"))
    assert resumed["step"] == 4 and resumed["valid"] == whole["valid"] and resumed["test"] == whole["test"]
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("whole", "split"))
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["ranks"][0]["stream"]["rng"] == b["ranks"][0]["stream"]["rng"]
    memory_a, memory_b = (c["ranks"][0]["memory"] for c in (a, b))
    flat_a, flat_b = [], []
    memory_a.apply(lambda t: flat_a.append(t) or t)
    memory_b.apply(lambda t: flat_b.append(t) or t)
    assert flat_a and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b, strict=True))


@pytest.mark.parametrize(
    "task, config",
    [
        ("copy", "copy.toml"),
        ("copy", "copy_quick.toml"),
        ("collision", "collision.toml"),
        ("collision", "collision_quick.toml"),
        ("collision", "collision_gpu.toml"),
        ("enwik8", "lm_enwik8_small.toml"),
        ("text", "lm_text_quick.toml"),
        ("wikitext103", "wikitext103.toml"),
        ("wikitext103", "wikitext103_memformer.toml"),
        ("wikitext103", "wikitext103_quick.toml"),
        ("pg19", "pg19.toml"),
        ("pg19", "pg19_quick.toml"),
    ],
)
def test_shipped_configs_fit_their_task_schema(task, config):
    args = train_lm.parse_args(["--task", task, "--model", "expire_span", "--config", str(ROOT / "configs" / config)])
    resolved = train_lm.resolve_config(args)
    train_lm.check_training(task, resolved["training"])
    for model in train_lm.MODELS:
        assert set(resolved["models"][model]) <= set(memory_models.model_options(model)), model


def test_warmup_then_cosine_decay():
    factor = train_lm.warmup_cosine(warmup=10, total=110)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(60) == pytest.approx(0.5) and factor(110) == pytest.approx(0.0)


def test_bad_input_stops_with_a_clear_message(tmp_path, text_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_lm.main(["--help"])
    assert exit_info.value.code == 0 and "--task" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_lm.main(["--task", "sorting", "--model", "lstm"])
    assert "invalid choice: 'sorting'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown config key 'model.d_modl'"):
        train_lm.main(arguments(tmp_path, "copy", "lstm", "--set", "model.d_modl=8"))
    with pytest.raises(ValueError, match="pass --data PATH"):
        train_lm.main(arguments(tmp_path, "text", "lstm"))
    with pytest.raises(DataError, match="does not exist"):
        train_lm.main(arguments(tmp_path, "text", "lstm", data=tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="too small for 2 streams of block \\+ 1 = 601"):
        train_lm.main(arguments(tmp_path, "text", "lstm", "--set", "training.block=600", data=text_file))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train_lm.main(arguments(tmp_path, "copy", "lstm", "--resume", name="fresh"))
    train_lm.main(arguments(tmp_path, "copy", "lstm", name="done"))
    first = (tmp_path / "done" / "checkpoint.pt").read_bytes()
    train_lm.main(arguments(tmp_path, "copy", "lstm", name="done"))  # a new run never writes into another's logdir
    assert "done holds another run (--resume continues it); this one writes to " in capsys.readouterr().err
    assert (tmp_path / "done" / "checkpoint.pt").read_bytes() == first
    assert (tmp_path / "done-2" / "checkpoint.pt").is_file()
    with pytest.raises(ValueError, match="config the checkpoint was trained with"):
        train_lm.main(arguments(tmp_path, "copy", "lstm", "--resume", "--set", "training.lr=0.1", name="done"))


def test_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "runners/train_lm.py", "--task", "text", "--model", "lstm", "--data", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["transformer_xl", "memformer"])  # DDP, and the replay path's own averaging
def test_two_process_torchrun_keeps_ranks_identical(tmp_path, model):
    args = arguments(tmp_path, "copy", model, "--set", "training.steps=3")
    rank0, rank1 = train_lm_on_two_ranks(tmp_path, args)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    config = train_lm.resolve_config(train_lm.parse_args(args))
    torch.manual_seed(0)  # the runner's initialisation: the weights did move, identically on both ranks
    memory = memory_models.build(model, **config["model"], **config["models"][model])
    initial = train_lm.SequenceModel(memory, vocab_in=3, vocab_out=4).state_dict()
    assert initial.keys() == rank0.keys() and not all(torch.equal(initial[k], rank0[k]) for k in rank0)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["ranks"]) == 2
    streams = [from_plain(r["stream"])["pending"][0]["tokens"] for r in checkpoint["ranks"]]
    assert not (len(streams[0]) == len(streams[1]) and (streams[0] == streams[1]).all())  # each rank its own data
