"""The sequence tasks' data: collision and copy rules, reproducibility, text, WikiText-103 and PG-19, bad input."""

import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from sequence_tasks import collision, copy_task, pg19, text, wikitext
from sequence_tasks.adaptive_input import AdaptiveInput
from sequence_tasks.language_model import adaptive_masked_loss
from sequence_tasks.tasks import build_task
from tests.corpora import book, write_pg19, write_wikitext

# --- collision ---------------------------------------------------------------------------------


def simulate(steps: int, batch: int = 16, grid: int = 8, colours: bool = True, seed: int = 0):
    simulator = collision.CollisionSimulator(batch, grid, colours, seed)
    history = []
    for _ in range(steps):
        before = {"position": simulator.position.copy(), "velocity": simulator.velocity.copy()}
        history.append({**before, **simulator.step(), "after_velocity": simulator.velocity.copy()})
    return history


def test_particles_stay_on_the_grid_and_velocities_resample_only_at_edges():
    grid = 8
    history = simulate(300, grid=grid)
    for h in history:
        assert ((h["cell"] >= 0) & (h["cell"] < grid)).all()
        proposed = h["position"] + h["velocity"]
        off = ((proposed < 0) | (proposed >= grid)).any(-1)  # B x 2
        assert (off == h["off_grid"]).all()
        # a blocked particle stays put with a new velocity; a free one moves with the same velocity
        assert np.array_equal(h["cell"][off], np.floor(h["position"][off]).astype(int))
        assert (h["after_velocity"][off] != h["velocity"][off]).all()
        assert np.allclose(h["after_velocity"][~off], h["velocity"][~off])
    assert sum(h["off_grid"].sum() for h in history) > 50  # the edge rule was exercised


def test_colours_change_at_the_given_rate_and_always_to_another_colour():
    history = simulate(600, batch=32)
    changes = np.stack([h["changed"] for h in history])  # S x B x 2
    assert abs(changes.mean() - collision.CHANGE_PROB) < 0.01
    colours = np.stack([h["colour"] for h in history])  # S x B x 2
    differs = colours[1:] != colours[:-1]
    assert np.array_equal(differs, changes[1:])


def reference_answers(history, batch: int) -> np.ndarray:
    """Replay the history by brute force: the quadrant of the last collision of each asked pair."""
    answers = np.full((len(history), batch), -1)
    collisions = [[] for _ in range(batch)]  # per row: (sorted colours, quadrant)
    for t, h in enumerate(history):
        for b in range(batch):
            cell = h["cell"][b]
            if (cell[0] == cell[1]).all():
                quadrant = int(cell[0, 0] >= 4) + 2 * int(cell[0, 1] >= 4)
                collisions[b].append((tuple(sorted(h["colour"][b])), quadrant))
            asked = tuple(sorted(h["question"][b]))
            matches = [q for pair, q in collisions[b] if pair == asked]
            answers[t, b] = matches[-1] if matches else -1
    return answers


def test_answer_is_the_quadrant_of_the_last_collision_of_the_asked_colours():
    batch = 16
    history = simulate(800, batch=batch)
    answers = np.stack([h["answer"] for h in history])
    assert np.array_equal(answers, reference_answers(history, batch))
    assert sum(h["collided"].sum() for h in history) > 100


def test_forty_percent_of_questions_ask_for_the_last_collision():
    history = simulate(1500, batch=32)
    last_pair = np.full((32, 2), -1)
    matched, expected = [], []
    for t, h in enumerate(history):
        pair = np.sort(h["colour"], axis=1)
        last_pair = np.where(h["collided"][:, None], pair, last_pair)
        if t >= 200:  # every row has seen a collision by now
            matched.append((np.sort(h["question"], axis=1) == last_pair).all(1))
            # a random question hits the pair by chance too: 2/25 for two colours, 1/25 for one
            chance = np.where(last_pair[:, 0] == last_pair[:, 1], 1 / 25, 2 / 25)
            expected.append(collision.MATCH_PROB + (1 - collision.MATCH_PROB) * chance)
    assert (last_pair >= 0).all()
    assert abs(np.mean(matched) - np.mean(expected)) < 0.015


def test_easy_version_has_no_colours_and_asks_for_the_last_collision():
    history = simulate(400, colours=False)
    last = np.full(16, -1)
    for h in history:
        assert (h["colour"] == 0).all() and (h["question"] == 0).all()
        last = np.where(h["collided"], h["quadrant"], last)
        assert np.array_equal(h["answer"], last)
    block = collision.CollisionStream(4, 64, grid=8, colours=False, seed=1).next_block()
    none = 4 * 8 + 2 * collision.N_COLOURS
    assert (block.tokens.view(4, 8, 8)[:, :, 4:] == none).all()


def test_collision_tokens_layout_and_loss_positions():
    grid, batch = 8, 4
    stream = collision.CollisionStream(batch, 16, grid, colours=True, seed=3)
    reference = collision.CollisionSimulator(batch, grid, True, seed=3)
    steps = [reference.step() for _ in range(2)]
    block = stream.next_block()
    tokens = block.tokens.view(batch, 2, 8).numpy()
    for s, step in enumerate(steps):
        cell, colour, question = step["cell"], step["colour"], step["question"]
        expected = np.stack(
            [
                cell[:, 0, 0],
                grid + cell[:, 0, 1],
                2 * grid + cell[:, 1, 0],
                3 * grid + cell[:, 1, 1],
                4 * grid + colour[:, 0],
                4 * grid + colour[:, 1],
                4 * grid + 5 + question[:, 0],
                4 * grid + 5 + question[:, 1],
            ],
            axis=1,
        )
        assert np.array_equal(tokens[:, s], expected)
    mask = block.mask.view(batch, 2, 8)
    assert not mask[:, :, :7].any()
    assert tokens.max() < collision.vocab_size(grid) and not block.first.any()


def test_collision_stream_is_reproducible_and_resumes_from_its_state():
    def blocks(stream, n):
        return [stream.next_block() for _ in range(n)]

    a, b = (collision.CollisionStream(4, 32, 16, True, seed=7) for _ in range(2))
    first = blocks(a, 3)
    assert all(torch.equal(x.tokens, y.tokens) for x, y in zip(first, blocks(b, 3), strict=True))
    saved = a.state_dict()
    later = blocks(a, 2)
    c = collision.CollisionStream(4, 32, 16, True, seed=99)
    c.load_state_dict(saved)
    resumed = blocks(c, 2)
    for x, y in zip(later, resumed, strict=True):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.mask, y.mask)
    other = collision.CollisionStream(4, 32, 16, True, seed=8).next_block()
    assert not torch.equal(other.tokens, first[0].tokens)


def test_collision_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple of 8"):
        collision.CollisionStream(2, 30, 16, True, seed=0)
    with pytest.raises(ValueError, match="grid"):
        collision.CollisionSimulator(2, 7, True, seed=0)


# --- copy ------------------------------------------------------------------------------------


def test_copy_answer_is_the_count_of_the_last_run_of_a():
    stream = copy_task.CopyStream(4, 64, max_count=5, min_distance=20, distance=40, seed=0)
    blocks = [stream.next_block() for _ in range(40)]
    tokens = torch.cat([b.tokens for b in blocks], 1).numpy()  # B x N
    targets, mask = (torch.cat([getattr(b, k) for b in blocks], 1).numpy() for k in ("targets", "mask"))
    queries = 0
    for row in range(4):
        for t in np.flatnonzero(mask[row]):
            assert tokens[row, t] == copy_task.QUERY_TOKEN
            before = tokens[row, :t]
            last_a = np.flatnonzero(before == copy_task.A_TOKEN)[-1]
            gap = t - last_a - 1
            assert 20 <= gap <= 40 and (before[last_a + 1 :] == copy_task.B_TOKEN).all()
            run_start = last_a
            while run_start > 0 and before[run_start - 1] == copy_task.A_TOKEN:
                run_start -= 1
            assert targets[row, t] + 1 == last_a - run_start + 1
            queries += 1
        assert (tokens[row][~mask[row]] != copy_task.QUERY_TOKEN).all()
    assert queries > 40 and len(np.unique(targets[mask])) == 5


def test_copy_stream_is_reproducible_and_resumes_from_its_state():
    make = lambda seed: copy_task.CopyStream(3, 50, max_count=4, min_distance=60, distance=90, seed=seed)  # noqa: E731
    a, b = make(1), make(1)
    assert all(torch.equal(a.next_block().tokens, b.next_block().tokens) for _ in range(5))
    saved = a.state_dict()
    later = [a.next_block() for _ in range(4)]
    c = make(2)
    c.load_state_dict(saved)
    assert all(torch.equal(x.tokens, c.next_block().tokens) for x in later)
    assert not torch.equal(make(3).next_block().tokens, make(4).next_block().tokens)


def test_copy_distance_may_reach_128k_but_not_beyond():
    stream = copy_task.CopyStream(1, 16, max_count=2, min_distance=131_072, distance=131_072, seed=0)
    assert stream.pending[0]["tokens"].size >= 131_072 + 2
    with pytest.raises(ValueError, match="131072"):
        copy_task.CopyStream(1, 16, max_count=2, min_distance=10, distance=131_073, seed=0)


# --- text ------------------------------------------------------------------------------------


def test_enwik8_split_constants_and_scaled_split(tmp_path):
    assert text.ENWIK8_SPLIT == (90_000_000, 5_000_000, 5_000_000)
    data = np.arange(1000, dtype=np.int64).astype(np.uint8)
    splits = text.split_by_sizes(data, 900, 50, 50)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [900, 50, 50]
    assert np.array_equal(np.concatenate([splits["train"], splits["valid"], splits["test"]]), data)
    path = tmp_path / "enwik8"
    path.write_bytes(bytes(data))
    sizes = {"train_bytes": 900, "valid_bytes": 50, "test_bytes": 50}
    task = build_task("enwik8", sizes, block=8, path=path, seed=0)
    valid = task.make_stream("valid", 2).next_block()
    assert valid.tokens[0, 0].item() == 900 % 256 and valid.tokens[1, 0].item() == 925 % 256
    with pytest.raises(text.DataError, match="fewer than the split needs"):
        text.split_by_sizes(data, 900, 60, 50)


def test_zipped_and_raw_files_read_the_same(tmp_path):
    raw = tmp_path / "data.txt"
    raw.write_bytes(b"hello world " * 50)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(raw, "enwik8")
    assert np.array_equal(text.read_bytes(raw), text.read_bytes(archive))


def test_bad_data_files_are_named(tmp_path):
    with pytest.raises(text.DataError, match="does not exist"):
        text.read_bytes(tmp_path / "missing.txt")
    with pytest.raises(text.DataError, match="not a file"):
        text.read_bytes(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(text.DataError, match="empty"):
        text.read_bytes(tmp_path / "empty.txt")
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a", "x")
        z.writestr("b", "y")
    with pytest.raises(text.DataError, match="exactly one file"):
        text.read_bytes(two)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("enwik8", "some text to corrupt")
    content = broken.read_bytes()
    broken.write_bytes(content.replace(b"some text", b"SOME TEXT"))  # the CRC no longer matches
    with pytest.raises(text.DataError, match="cannot be read"):
        text.read_bytes(broken)
    with pytest.raises(text.DataError, match="too small"):
        text.TextStream(np.zeros(100, np.uint8), batch_size=4, block=32, loop=True, name="train")


def test_text_stream_reads_contiguous_rows_per_rank_and_wraps_with_a_first_flag():
    data = (np.arange(4 * 25) % 251).astype(np.uint8)  # 4 rows of 25 bytes over 2 ranks
    rank1 = text.TextStream(data, batch_size=2, block=8, rank=1, world_size=2, loop=True)
    blocks = [rank1.next_block() for _ in range(4)]
    assert blocks[0].tokens[:, 0].tolist() == [50, 75]  # rows 2 and 3 of 4
    assert torch.equal(blocks[0].targets[:, :-1], blocks[0].tokens[:, 1:])
    assert torch.equal(blocks[1].tokens[:, 0], blocks[0].tokens[:, -1] + 1)
    assert blocks[0].first[:, 0].all() and not blocks[1].first.any()
    assert torch.equal(blocks[3].tokens, blocks[0].tokens) and blocks[3].first[:, 0].all()  # 25 bytes: 3 blocks
    finite = text.TextStream(data, batch_size=4, block=8, loop=False)
    assert [finite.next_block() is None for _ in range(4)] == [False, False, False, True]


def stream_blocks(stream, limit: int = 1000) -> list:
    blocks = []
    while len(blocks) < limit and (block := stream.next_block()) is not None:
        blocks.append(block)
    return blocks


# --- WikiText-103 (words) --------------------------------------------------------------------


def test_wikitext_vocabulary_comes_from_training_with_eos_at_line_ends(tmp_path):
    folder = write_wikitext(tmp_path, train="a b a\n\n c a b \n", valid=" a d\n", test="c")  # test: no final newline
    vocabulary, splits = wikitext.load(folder)
    # counts a 3, <eos> 3 (the empty line too), b 2, c 1; ties in order of first appearance; <unk> added last
    assert vocabulary.words == ["a", "<eos>", "b", "c", "<unk>"] and len(vocabulary) == 5
    assert splits["train"].tolist() == [0, 2, 0, 1, 1, 3, 0, 2, 1]
    assert splits["valid"].tolist() == [0, 4, 1] and splits["test"].tolist() == [3, 1]  # d is not a training word
    folder = write_wikitext(tmp_path / "unk", train="<unk> x <unk>\n", valid="y\n", test="x\n")
    vocabulary, splits = wikitext.load(folder)
    assert vocabulary.words == ["<unk>", "x", "<eos>"] and splits["valid"].tolist() == [0, 2]  # the data's own <unk>


def test_wikitext_task_streams_word_ids_with_perplexity(tmp_path):
    folder = write_wikitext(tmp_path, train=" a b c d e f g h\n" * 4, valid=" h g f e d c b a\n" * 2, test=" a\n" * 9)
    task = build_task("wikitext103", {}, block=4, path=folder, seed=0)
    assert (task.vocab_in, task.vocab_out, task.metric) == (10, 10, "ppl")
    valid = task.make_stream("valid", 2)
    block = valid.next_block()
    ids = wikitext.load(folder)[1]["valid"]
    assert block.tokens[0].tolist() == ids[:4].tolist() and block.tokens[1].tolist() == ids[9:13].tolist()
    assert torch.equal(block.targets[:, :-1], block.tokens[:, 1:]) and block.mask.all()
    one_row = stream_blocks(task.make_stream("valid", 1))  # 18 words: 4 blocks of 4, then 1 word padded
    assert len(one_row) == 5 and one_row[-1].mask.tolist() == [[True, False, False, False]]
    scored = torch.cat([b.targets[b.mask] for b in one_row])
    assert scored.tolist() == ids[1:].tolist()  # every word but the row's first, once
    train = task.make_stream("train", 1)
    assert all(train.next_block().mask.all() for _ in range(20))  # training wraps instead
    with pytest.raises(text.DataError, match="the test split has 18 words: too small for 8 streams"):
        task.make_stream("test", 8)


def test_wikitext_missing_or_bad_files_are_named(tmp_path):
    with pytest.raises(text.DataError, match="does not exist .*wiki.train.tokens"):
        wikitext.load(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(text.DataError, match="not a folder"):
        wikitext.load(tmp_path / "file")
    folder = write_wikitext(tmp_path / "data", "a\n", "a\n", "a\n")
    (folder / "wiki.valid.tokens").unlink()
    with pytest.raises(text.DataError, match="wiki.valid.tokens' is missing"):
        wikitext.load(folder)
    write_wikitext(folder, "a\n", "a\n", " \n\n")
    with pytest.raises(text.DataError, match="wiki.test.tokens' is empty"):
        wikitext.load(folder)
    (folder / "wiki.test.tokens").write_bytes(b"a \xff\n")
    with pytest.raises(text.DataError, match="wiki.test.tokens' is not UTF-8"):
        wikitext.load(folder)
    with pytest.raises(ValueError, match="pass --data DIR"):
        build_task("wikitext103", {}, block=4, path=None, seed=0)


# --- PG-19 (characters of books) ---------------------------------------------------------------


def test_pg19_vocabulary_is_the_most_frequent_training_characters(tmp_path):
    folder = write_pg19(tmp_path, {"train": ["aab\n", "bcé"], "validation": ["az"], "test": ["c"]})
    books = pg19.find_books(folder)
    vocabulary = pg19.build_vocabulary(books["train"], vocab_size=3506)
    assert vocabulary.chars == "ab\ncé" and len(vocabulary) == 7  # a, b twice (ties by code point), then once each
    assert vocabulary.encode("abzé").tolist() == [2, 3, pg19.UNK, 6]  # z is not a training character
    small = pg19.build_vocabulary(books["train"], vocab_size=4)
    assert small.chars == "ab" and small.encode("abc").tolist() == [2, 3, pg19.UNK]
    task = build_task("pg19", {"vocab_size": 3506}, block=4, path=folder, seed=0)
    assert (task.vocab_in, task.vocab_out, task.metric) == (7, 7, "bpc")


def test_book_stream_scores_every_character_once_and_never_across_books(tmp_path):
    texts = [book(n, seed) for seed, n in enumerate([23, 5, 40, 11, 17])]
    folder = write_pg19(tmp_path, {"train": texts, "validation": texts, "test": texts})
    books = pg19.find_books(folder)
    vocabulary = pg19.build_vocabulary(books["train"], 3506)
    rows = pg19.deal_books(books["valid"], 2)
    # by size: 23 -> row 0, 5 -> row 1, 40 -> row 1 (5 < 23), 11 -> row 0 (23 < 45), 17 -> row 0 (34 < 45)
    assert [[p.name for p in r] for r in rows] == [["000.txt", "003.txt", "004.txt"], ["001.txt", "002.txt"]]
    blocks = stream_blocks(pg19.BookStream(books["valid"], vocabulary, 2, 8, loop=False))
    tokens, targets, mask, first = (
        torch.cat([getattr(b, k) for b in blocks], 1) for k in ("tokens", "targets", "mask", "first")
    )
    assert len(blocks) == 7  # row 0 has 23 + 11 + 17 = 51 characters: ceil(51 / 8) blocks
    for row, row_books in enumerate([[0, 3, 4], [1, 2]]):
        scored = targets[row][mask[row]]
        assert scored.tolist() == vocabulary.encode("".join(texts[b] for b in row_books)).tolist()
        starts = torch.cumsum(torch.tensor([0] + [len(texts[b]) for b in row_books[:-1]]), 0)
        assert torch.flatten(torch.nonzero(first[row])).tolist() == starts.tolist()
        assert (tokens[row][first[row]] == pg19.BOS).all() and (tokens[row][mask[row] & ~first[row]] != pg19.BOS).all()
        assert not mask[row][int(mask[row].sum()) :].any()  # a row that runs out is padding to the end
    assert (targets[mask] != pg19.BOS).all()  # no position predicts the next book's start


def test_book_stream_loops_in_training_and_resumes_from_its_state(tmp_path):
    texts = [book(n, seed) for seed, n in enumerate([9, 14, 6])]
    folder = write_pg19(tmp_path, {"train": texts, "validation": texts[:1], "test": texts[:1]})
    books = pg19.find_books(folder)
    vocabulary = pg19.build_vocabulary(books["train"], 3506)
    stream = pg19.BookStream(books["train"], vocabulary, 1, 4, loop=True)
    blocks = [stream.next_block() for _ in range(10)]
    row = torch.cat([b.targets[0] for b in blocks])
    assert row.tolist() == vocabulary.encode("".join(texts) * 2)[:40].tolist() and all(b.mask.all() for b in blocks)
    first = torch.cat([b.first[0] for b in blocks])
    assert torch.flatten(torch.nonzero(first)).tolist() == [0, 9, 23, 29, 38]  # the second pass starts with one too
    stream = pg19.BookStream(books["train"], vocabulary, 1, 4, loop=True)
    for _ in range(3):
        stream.next_block()
    resumed = pg19.BookStream(books["train"], vocabulary, 1, 4, loop=True)
    resumed.load_state_dict(stream.state_dict())
    assert stream.state_dict() == {"book": [1], "position": [3]}
    assert all(torch.equal(b.tokens, resumed.next_block().tokens) for b in blocks[3:])


def test_pg19_missing_or_bad_folders_are_named(tmp_path):
    with pytest.raises(text.DataError, match="does not exist .*train/, validation/ and test/"):
        pg19.find_books(tmp_path / "missing")
    folder = write_pg19(tmp_path / "data", {"train": ["abc"], "test": ["abc"]})
    with pytest.raises(text.DataError, match="validation' is missing"):
        pg19.find_books(folder)
    (folder / "validation").mkdir()
    (folder / "validation" / "notes.md").write_text("not a book")
    with pytest.raises(text.DataError, match="validation' holds no .txt books"):
        pg19.find_books(folder)
    write_pg19(folder, {"validation": ["abc"], "train": ["abc", ""]})
    books = pg19.find_books(folder)
    with pytest.raises(text.DataError, match="book '.*train/001.txt' is empty"):
        pg19.build_vocabulary(books["train"], 3506)
    vocabulary = pg19.build_vocabulary(books["valid"], 3506)
    with pytest.raises(text.DataError, match="the train split has 2 books: fewer than the 4 streams"):
        pg19.BookStream(books["train"], vocabulary, 2, 8, world_size=2, loop=True, name="train")
    with pytest.raises(ValueError, match="pass --data DIR"):
        build_task("pg19", {"vocab_size": 3506}, block=4, path=None, seed=0)


# --- adaptive input and softmax ----------------------------------------------------------------


def test_adaptive_input_bands_embed_in_fewer_dimensions():
    torch.manual_seed(0)
    layer = AdaptiveInput(vocab_size=100, d_model=16, cutoffs=[10, 40], div_value=4.0)
    assert [tuple(e.shape) for e in layer.embeddings] == [(10, 16), (30, 4), (60, 1)]
    assert [tuple(p.shape) for p in layer.projections] == [(16, 4), (16, 1)]
    tokens = torch.tensor([[3, 10, 39, 40, 99]])
    out = layer(tokens)  # 1 x 5 x 16
    expected = torch.stack(
        [
            layer.embeddings[0][3],
            layer.projections[0] @ layer.embeddings[1][0],
            layer.projections[0] @ layer.embeddings[1][29],
            layer.projections[1] @ layer.embeddings[2][0],
            layer.projections[1] @ layer.embeddings[2][59],
        ]
    )
    assert torch.allclose(out[0], expected * 4.0)  # scaled by sqrt(d_model)
    out[:, :1].sum().backward()  # only a band-0 word: every weight still gets a gradient, zero outside band 0
    assert all(p.grad is not None for p in layer.parameters())
    assert not layer.embeddings[1].grad.any() and layer.embeddings[0].grad[3].any()
    with pytest.raises(ValueError, match="cutoffs must increase"):
        AdaptiveInput(100, 16, [40, 10])


def test_tied_adaptive_input_reads_the_adaptive_softmax_weights():
    softmax = nn.AdaptiveLogSoftmaxWithLoss(16, 100, [10, 40], div_value=4.0, head_bias=True)
    layer = AdaptiveInput(100, 16, [10, 40], 4.0, tied=softmax)
    assert not list(layer.parameters())
    out = layer(torch.tensor([[7, 25, 70]]))[0]  # 3 x 16
    assert torch.allclose(out[0], 4.0 * softmax.head.weight[7])
    assert torch.allclose(out[1], 4.0 * softmax.tail[0][0].weight.t() @ softmax.tail[0][1].weight[15])
    assert torch.allclose(out[2], 4.0 * softmax.tail[1][0].weight.t() @ softmax.tail[1][1].weight[30])
    with pytest.raises(ValueError, match="tied adaptive input needs"):
        AdaptiveInput(100, 16, [10, 50], 4.0, tied=softmax)


def test_adaptive_softmax_loss_is_the_masked_log_likelihood_of_the_full_distribution():
    torch.manual_seed(0)
    softmax = nn.AdaptiveLogSoftmaxWithLoss(8, 50, [5, 20], div_value=2.0, head_bias=True)
    features = torch.randn(2, 6, 8)  # B x T x D
    targets = torch.tensor([[0, 4, 7, 30, 49, 2], [1, 1, 1, 1, 1, 1]])
    mask = torch.tensor([[True] * 6, [True, False, False, False, False, False]])
    loss, stats = adaptive_masked_loss(softmax, features, targets, mask)
    log_prob = softmax.log_prob(features.flatten(0, 1)).view(2, 6, 50)  # the full distribution
    nll = -log_prob.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # B x T
    assert torch.allclose(stats["nll"], nll[mask].sum()) and stats["count"] == 7
    assert torch.allclose(loss, nll[mask].mean())
    head_only = torch.zeros(2, 6, dtype=torch.long)  # no target in a tail cluster
    adaptive_masked_loss(softmax, features, head_only, mask)[0].backward()
    assert all(p.grad is not None for p in softmax.parameters())  # zero, but present on every rank
