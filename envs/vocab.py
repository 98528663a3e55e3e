"""The word vocabulary of the gridworlds.

Every cell of an observation is described by words, as in MazeBase: a wall cell says `wall grey`,
a red door says `door red`, the agent's own cell says `agent` (plus any task words). An env's
vocabulary is the shared base words followed by its task words; channel k of an observation means
`vocab[k]`, and the batched twin uses the very same list.
"""

from collections.abc import Iterable

from minigrid.core.constants import COLOR_NAMES

OBJECT_WORDS = ("wall", "door", "ball", "key", "box", "floor")
BASE_WORDS = ("agent", *OBJECT_WORDS, *COLOR_NAMES)


def build_vocab(task_words: Iterable[str] = ()) -> tuple[str, ...]:
    """The base words (agent, object types, minigrid's colour names) followed by `task_words`."""
    vocab = (*BASE_WORDS, *task_words)
    repeated = sorted({word for word in vocab if vocab.count(word) > 1})
    if repeated:
        raise ValueError(f"task words repeat words already in the vocabulary: {', '.join(repeated)}")
    return vocab
