"""runners/train_lm.py on data folders: WikiText-103 (words, perplexity) and PG-19 (books, bits per character).

Short runs, perplexity and bpc against hand-computed values, no memory across books (checked from
outside the models), exact resume, the shipped presets, bad folders, two-process torchrun.
"""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import memory_models
from runners import train_lm
from sequence_tasks import wikitext
from sequence_tasks.language_model import SequenceModel
from sequence_tasks.tasks import build_task
from sequence_tasks.text import DataError
from tests.corpora import book, word_lines, write_pg19, write_wikitext
from tests.two_ranks import train_lm_on_two_ranks
from training.checkpoint import load_checkpoint
from training.distributed import World

ROOT = Path(__file__).resolve().parents[1]
CPU = World(rank=0, world_size=1, device=torch.device("cpu"))
TINY = [
    *("--set", "model.d_model=16", "--set", "model.n_heads=2"),
    *("--set", "training.batch_size=2", "--set", "training.block=16", "--set", "training.steps=2"),
    *("--set", "training.log_every=1", "--set", "training.eval_every=0", "--set", "training.eval_blocks=2"),
    *("--set", "training.checkpoint_every=0", "--set", "training.mrbp_horizon=2"),
]
TASK_DATA = {"wikitext103": ["--set", "output.cutoffs=[4, 12]"], "pg19": []}


@pytest.fixture(scope="module")
def wikitext_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wikitext")
    return write_wikitext(folder, word_lines(120, seed=1), word_lines(30, seed=2), word_lines(30, seed=3))


@pytest.fixture(scope="module")
def pg19_folder(tmp_path_factory) -> Path:
    books = {
        "train": [book(300 + 40 * k, seed=k) for k in range(5)],
        "validation": [book(200, seed=10), book(90, seed=11)],
        "test": [book(150, seed=12), book(120, seed=13), book(60, seed=14)],
    }
    return write_pg19(tmp_path_factory.mktemp("pg19"), books)


def arguments(tmp_path: Path, task: str, model: str, data: Path, *extra: str, name: str = "run") -> list[str]:
    args = ["--task", task, "--model", model, "--device", "cpu", "--logdir", str(tmp_path / name), "--data", str(data)]
    return args + TINY + TASK_DATA[task] + list(extra)


@pytest.mark.parametrize("task", ["wikitext103", "pg19"])
def test_short_run_per_folder_task(tmp_path, wikitext_folder, pg19_folder, task):
    data = wikitext_folder if task == "wikitext103" else pg19_folder
    summary = train_lm.main(arguments(tmp_path, task, "transformer_xl", data))
    metric = {"wikitext103": "ppl", "pg19": "bpc"}[task]
    assert summary["step"] == 2 and set(summary["test"]) == {"loss", metric}
    assert math.isfinite(summary["valid"][metric]) and math.isfinite(summary["test"]["loss"])
    if task == "wikitext103":
        assert summary["valid"]["ppl"] == pytest.approx(math.exp(summary["valid"]["loss"]))
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "summary.json").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run").iterdir())


def constant_model(vocab: int, probabilities: list[float], **output) -> SequenceModel:
    """A tiny model whose every prediction is ``probabilities``: the head's weights zero, its bias their log."""
    model = SequenceModel(memory_models.build("lstm", d_model=8, n_layers=1), vocab, vocab, **output)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.zero_()
        head = model.head.head if output.get("adaptive_softmax") else model.head
        head.bias.copy_(torch.tensor(probabilities).log())
    return model


def test_perplexity_on_a_tiny_model_matches_the_hand_computed_value(tmp_path):
    # vocabulary by training counts: a 3, <eos> 2, b 1, c 1 (b first), then <unk>: ids a 0, <eos> 1, b 2, c 3, <unk> 4
    folder = write_wikitext(tmp_path, train=" a b c a \n a \n", valid=" a b \n c a b c a \n", test=" a \n")
    task = build_task("wikitext103", {}, block=4, path=folder, seed=0)
    config = {"training": {"batch_size": 1, "eval_blocks": 0}}
    # valid: a b <eos> c a b c a <eos>, 9 words in 2 blocks of 4; the 8 targets b <eos> c a b c a <eos>
    model = constant_model(5, [0.4, 0.2, 0.1, 0.2, 0.1])
    assert train_lm.evaluate(model, task, "valid", config, CPU)["ppl"] == pytest.approx(5.0)  # (0.2^8)^(-1/8)
    # adaptive softmax with cut-off 2: head a 0.4, <eos> 0.2, the tail cluster {b, c, <unk>} 0.4, uniform inside
    adaptive = {"adaptive_input": True, "adaptive_softmax": True, "cutoffs": [2], "div_value": 2.0}
    model = constant_model(5, [0.4, 0.2, 0.4], **adaptive)
    expected = ((0.4 / 3) ** 4 * 0.2**2 * 0.4**2) ** (-1 / 8)
    assert train_lm.evaluate(model, task, "valid", config, CPU)["ppl"] == pytest.approx(expected)


def test_bits_per_character_on_a_tiny_model_matches_the_hand_computed_value(tmp_path):
    # ids: <bos> 0, <unk> 1, a 2, b 3 (a and b three times each: ties by code point)
    folder = write_pg19(tmp_path, {"train": ["abab", "ba"], "validation": ["ab", "bbb"], "test": ["a"]})
    task = build_task("pg19", {"vocab_size": 3506}, block=4, path=folder, seed=0)
    config = {"training": {"batch_size": 2, "eval_blocks": 0}}
    # one book per row; scored: a b | b b b (not <bos>, not the padding after "ab")
    model = constant_model(4, [0.125, 0.125, 0.25, 0.5])
    assert train_lm.evaluate(model, task, "valid", config, CPU)["bpc"] == pytest.approx((2 + 4 * 1) / 5)


BOUNDARY_OPTIONS = {
    "transformer_xl": {"mem_len": 16},
    "expire_span": {"max_span": 64, "ramp": 16, "pos_len": 32},
    "adaptive_span": {"max_span": 32, "ramp": 16},
    "compressive": {"mem_len": 8, "cmem_len": 4, "compression_rate": 2},
    "memformer": {"num_slots": 4, "segment_len": 8},
    "lstm": {},
}


def later_book_outputs(tmp_path: Path, model: SequenceModel, earlier: str, later: str) -> torch.Tensor:
    """The model's outputs over the ``later`` book of one row that reads ``earlier`` first, in blocks of 8."""
    # the same training book every time, so the same vocabulary
    folder = write_pg19(tmp_path, {"train": [book(2000, seed=0)], "validation": [earlier, later], "test": [later]})
    task = build_task("pg19", {"vocab_size": 3506}, block=8, path=folder, seed=0)
    assert task.vocab_in <= model.embed.num_embeddings
    stream = task.make_stream("valid", 1)
    state = model.memory.initial_state(1, "cpu")
    outputs = []
    with torch.no_grad():
        while (batch := stream.next_block()) is not None:
            logits, state, _ = model(batch.tokens, state, batch.first)  # 1 x 8 x vocab
            outputs.append(logits[batch.mask])
    return torch.cat(outputs)[len(earlier) :]  # len(later) x vocab


@pytest.mark.parametrize("name", list(BOUNDARY_OPTIONS))
def test_no_memory_crosses_a_book_but_it_is_carried_within_one(tmp_path, name):
    torch.manual_seed(0)
    memory = memory_models.build(name, d_model=16, n_layers=2, n_heads=2, **BOUNDARY_OPTIONS[name])
    model = SequenceModel(memory, 64, 64).eval()
    earlier, later = book(30, seed=1), book(48, seed=2)
    reference = later_book_outputs(tmp_path / "a", model, earlier, later)
    same_length = later_book_outputs(tmp_path / "b", model, book(30, seed=3), later)
    other_length = later_book_outputs(tmp_path / "c", model, book(13, seed=4), later)  # the book starts mid-block
    assert torch.equal(reference, same_length)
    assert torch.allclose(reference, other_length, atol=1e-5)
    # the control: change the later book's second character; outputs two blocks on still differ
    changed = later[:1] + ("a" if later[1] != "a" else "b") + later[2:]
    within = later_book_outputs(tmp_path / "d", model, earlier, changed)
    assert not torch.allclose(reference[17:24], within[17:24], atol=1e-4)


@pytest.mark.parametrize(
    "task, model, extra",
    [
        ("wikitext103", "expire_span", ["--set", "output.tie_weights=false", "--set", "output.dropout=0.1"]),
        ("wikitext103", "memformer", ["--set", "output.dropout=0.1"]),
        ("pg19", "memformer", []),
        ("pg19", "transformer_xl", []),
    ],
)
def test_resumed_run_equals_uninterrupted_run(tmp_path, wikitext_folder, pg19_folder, task, model, extra):
    data = wikitext_folder if task == "wikitext103" else pg19_folder
    common = ["--set", "training.steps=4", "--set", "model.dropout=0.1", *extra]
    whole = train_lm.main(arguments(tmp_path, task, model, data, *common, name="whole"))
    train_lm.main(arguments(tmp_path, task, model, data, *common, "--steps", "2", name="split"))
    resumed = train_lm.main(arguments(tmp_path, task, model, data, *common, "--resume", name="split"))
    assert resumed["step"] == 4 and resumed["valid"] == whole["valid"] and resumed["test"] == whole["test"]
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("whole", "split"))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    assert a["ranks"][0]["stream"] == b["ranks"][0]["stream"]
    flat_a, flat_b = [], []
    a["ranks"][0]["memory"].apply(lambda t: flat_a.append(t) or t)
    b["ranks"][0]["memory"].apply(lambda t: flat_b.append(t) or t)
    assert flat_a and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b, strict=True))


def test_adaptive_layers_have_the_hand_counted_parameters(tmp_path, wikitext_folder):
    def parameters(*overrides: str) -> int:
        sets = [item for override in overrides for item in ("--set", override)]
        name = "-".join(overrides) or "tied"
        return train_lm.main(arguments(tmp_path, "wikitext103", "lstm", wikitext_folder, *sets, name=name))[
            "parameters"
        ]

    vocab = len(wikitext.load(wikitext_folder)[0])
    tied = parameters()
    untied = parameters("output.tie_weights=false")
    full = parameters("output.adaptive_input=false", "output.adaptive_softmax=false", "output.tie_weights=false")
    # d_model 16, cut-offs 4 and 12, div_value 2: bands of 16, 8 and 4 dimensions
    softmax = (16 * 6 + 6) + (16 * 8 + 8 * 8) + (16 * 4 + 4 * (vocab - 12))  # head (+ bias), two tail clusters
    adaptive_input = 4 * 16 + (8 * 8 + 16 * 8) + (4 * (vocab - 12) + 16 * 4)  # embeddings and projections
    assert untied - tied == adaptive_input
    assert full - tied == (vocab * 16 + vocab * 16 + vocab) - softmax  # a table and a linear head with its bias


@pytest.mark.parametrize("config", ["wikitext103.toml", "wikitext103_memformer.toml", "wikitext103_quick.toml"])
def test_the_wikitext_presets_adaptive_bands_fit_its_vocabulary(config):
    """(tests/test_lm_runner.py checks every shipped config against its task's schema.)"""
    args = train_lm.parse_args(["--task", "wikitext103", "--model", "lstm", "--config", str(ROOT / "configs" / config)])
    resolved = train_lm.resolve_config(args)
    memory = memory_models.build("lstm", d_model=resolved["model"]["d_model"])
    SequenceModel(memory, 267_735, 267_735, **resolved["output"])  # the WikiText-103 vocabulary fits the bands


def test_bad_folders_and_settings_stop_with_a_clear_message(tmp_path, wikitext_folder, pg19_folder):
    with pytest.raises(ValueError, match="pass --data DIR"):
        train_lm.main(["--task", "pg19", "--model", "lstm", "--device", "cpu", "--logdir", str(tmp_path / "x"), *TINY])
    with pytest.raises(DataError, match="data folder .* does not exist"):
        train_lm.main(arguments(tmp_path, "wikitext103", "lstm", tmp_path / "missing"))
    with pytest.raises(DataError, match="'.*/train' is missing: a PG-19 folder holds"):
        train_lm.main(arguments(tmp_path, "pg19", "lstm", wikitext_folder))
    vocab = len(wikitext.load(wikitext_folder)[0])
    with pytest.raises(ValueError, match=f"output.cutoffs must lie between 0 and the vocabulary size {vocab}"):
        train_lm.main(
            arguments(tmp_path, "wikitext103", "lstm", wikitext_folder, "--set", f"output.cutoffs=[4, {vocab}]")
        )
    with pytest.raises(DataError, match="the train split has 5 books: fewer than the 8 streams"):
        train_lm.main(arguments(tmp_path, "pg19", "lstm", pg19_folder, "--set", "training.batch_size=8"))
    folder = write_wikitext(tmp_path / "words", "a\n", "a\n", "a\n")
    (folder / "wiki.test.tokens").unlink()
    result = subprocess.run(
        [sys.executable, "runners/train_lm.py", "--task", "wikitext103", "--model", "lstm", "--data", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    needed = "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens"
    expected = f"error: {str(folder / 'wiki.test.tokens')!r} is missing: a WikiText folder holds {needed}"
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [expected]  # one line, no traceback


@pytest.mark.parametrize("model", ["transformer_xl", "memformer"])  # DDP, and the replay path's own averaging
def test_two_process_torchrun_on_words_keeps_ranks_identical(tmp_path, wikitext_folder, model):
    args = arguments(tmp_path, "wikitext103", model, wikitext_folder, "--set", "training.steps=3")
    rank0, rank1 = train_lm_on_two_ranks(tmp_path, args)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    config = train_lm.resolve_config(train_lm.parse_args(args))
    torch.manual_seed(0)  # the runner's initialisation: the weights did move, identically on both ranks
    memory = memory_models.build(model, **config["model"], **config["models"][model])
    vocab = len(wikitext.load(wikitext_folder)[0])
    initial = SequenceModel(memory, vocab, vocab, **config["output"]).state_dict()
    assert initial.keys() == rank0.keys() and all(not torch.equal(initial[k], rank0[k]) for k in rank0)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    blocks = 3 * (2 if model == "memformer" else 1)  # the replay path reads mrbp_horizon blocks per update
    assert (
        checkpoint["world_size"] == 2 and [r["stream"] for r in checkpoint["ranks"]] == [{"position": 16 * blocks}] * 2
    )
