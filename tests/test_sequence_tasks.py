"""The sequence tasks' data: collision and copy rules, reproducibility, text splits and bad input."""

import zipfile

import numpy as np
import pytest
import torch

from sequence_tasks import collision, copy_task, text
from sequence_tasks.tasks import build_task

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
