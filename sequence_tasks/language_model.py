"""A token model around any memory model: embedding, the memory model from the registry, output head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from memory_models import MemoryModel, MemoryRecord, MemoryState


class SequenceModel(nn.Module):
    """Maps B x T token ids to B x T x vocab_out logits while carrying the memory model's state."""

    def __init__(self, memory: MemoryModel, vocab_in: int, vocab_out: int):
        super().__init__()
        self.memory = memory
        self.embed = nn.Embedding(vocab_in, memory.d_model)
        self.norm = nn.LayerNorm(memory.d_model)
        self.head = nn.Linear(memory.d_model, vocab_out)

    def forward(self, tokens: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, MemoryState, MemoryRecord]:
        x = self.embed(tokens)  # B x T x D
        state = self.memory.begin_window(state)  # a call is a training window here: one shortening draw each
        out, next_state, record = self.memory(x, state, first)  # B x T x D
        return self.head(self.norm(out)), next_state, record  # B x T x vocab_out


def masked_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean cross-entropy over the positions that count, and the sums a metric needs (no host sync).

    Returns the loss and {nll: summed negative log-likelihood in nats, correct: right argmax answers,
    count: scored positions}, each a detached scalar tensor.
    """
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)  # B x T
    weight = mask.to(nll.dtype)  # B x T
    count = weight.sum()
    nll_sum = (nll * weight).sum()
    correct = ((logits.argmax(-1) == targets) & mask).sum().to(nll.dtype)
    loss = nll_sum / count.clamp(min=1.0)
    return loss, {"nll": nll_sum.detach(), "correct": correct, "count": count}
