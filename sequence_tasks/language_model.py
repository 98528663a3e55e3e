"""A token model around any memory model: embedding, the memory model from the registry, output head.

The embedding is a table, or adaptive input (``sequence_tasks.adaptive_input``); the output head is
a linear layer over the vocabulary, or torch's adaptive softmax, which scores only the targets and so
never forms the B x T x vocab logits of a large vocabulary (WikiText-103's 268k words).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memory_models import MemoryModel, MemoryRecord, MemoryState
from sequence_tasks.adaptive_input import AdaptiveInput


class SequenceModel(nn.Module):
    """Maps B x T token ids to the head's B x T outputs while carrying the memory model's state.

    The outputs are B x T x vocab_out logits, or with ``adaptive_softmax`` the B x T x D features the
    adaptive softmax scores; ``loss`` takes either. ``cutoffs`` and ``div_value`` shape both the adaptive
    input and the adaptive softmax; ``tie_weights`` shares the embedding with the output layer (both
    adaptive, or neither); ``dropout`` applies to the embedding's output and the last layer's.
    """

    def __init__(
        self,
        memory: MemoryModel,
        vocab_in: int,
        vocab_out: int,
        *,
        adaptive_input: bool = False,
        adaptive_softmax: bool = False,
        cutoffs: Sequence[int] = (),
        div_value: float = 4.0,
        tie_weights: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        d_model = memory.d_model
        if (adaptive_input or adaptive_softmax) and not (cutoffs and 0 < min(cutoffs) and max(cutoffs) < vocab_out):
            raise ValueError(
                f"output.cutoffs must lie between 0 and the vocabulary size {vocab_out} for adaptive input or "
                f"softmax, got {list(cutoffs)}"
            )
        if tie_weights and (vocab_in != vocab_out or adaptive_input != adaptive_softmax):
            raise ValueError("output.tie_weights needs one vocabulary in and out, and both or neither adaptive")
        self.memory = memory
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.adaptive_softmax = adaptive_softmax
        if adaptive_softmax:
            self.head = nn.AdaptiveLogSoftmaxWithLoss(d_model, vocab_out, list(cutoffs), div_value, head_bias=True)
        else:
            self.head = nn.Linear(d_model, vocab_out)
        if adaptive_input:
            tied = self.head if tie_weights else None
            self.embed = AdaptiveInput(vocab_in, d_model, cutoffs, div_value, tied=tied)
        else:
            self.embed = nn.Embedding(vocab_in, d_model)
            if tie_weights:
                self.embed.weight = self.head.weight

    def inputs(self, tokens: Tensor) -> Tensor:
        """B x T token ids -> the memory model's B x T x D inputs."""
        return self.drop(self.embed(tokens))

    def outputs(self, out: Tensor) -> Tensor:
        """The memory model's B x T x D outputs -> logits (B x T x vocab_out) or adaptive-softmax features."""
        features = self.drop(self.norm(out))  # B x T x D
        return features if self.adaptive_softmax else self.head(features)

    def forward(self, tokens: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, MemoryState, MemoryRecord]:
        state = self.memory.begin_window(state)  # a call is a training window here: one shortening draw each
        out, next_state, record = self.memory(self.inputs(tokens), state, first)  # B x T x D
        return self.outputs(out), next_state, record

    def loss(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``masked_loss`` of what ``outputs`` or ``forward`` returned, through this model's head."""
        if not self.adaptive_softmax:
            return masked_loss(outputs, targets, mask)
        return adaptive_masked_loss(self.head, outputs, targets, mask)


def masked_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean cross-entropy over the positions that count, and the sums a metric needs (no host sync).

    Returns the loss and {nll: summed negative log-likelihood in nats, correct: right argmax answers,
    count: scored positions}, each a detached scalar tensor.
    """
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)  # B x T
    correct = ((logits.argmax(-1) == targets) & mask).sum().to(nll.dtype)
    return summed_loss(nll, mask, correct)


def adaptive_masked_loss(
    softmax: nn.AdaptiveLogSoftmaxWithLoss, features: Tensor, targets: Tensor, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """``masked_loss`` through an adaptive softmax over B x T x D ``features``.

    ``correct`` is 0: the argmax would need the full distribution the adaptive softmax exists to avoid.
    """
    log_prob = softmax(features.flatten(0, 1), targets.flatten()).output  # B*T: each target's log-probability
    nll = -log_prob.view_as(targets)  # B x T
    loss, stats = summed_loss(nll, mask, torch.zeros((), dtype=nll.dtype, device=nll.device))
    # A tail cluster that no target of the block falls in is skipped by the softmax; the zero term still
    # gives its weights a (zero) gradient, so that every rank's DDP reducer and the replay path's
    # all-reduce see the same parameters with gradients on every update.
    untouched = sum(weight.sum() for weight in softmax.tail.parameters()) * 0.0
    return loss + untouched, stats


def summed_loss(nll: Tensor, mask: Tensor, correct: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The mean of the B x T ``nll`` where ``mask`` holds, and the detached sums."""
    weight = mask.to(nll.dtype)  # B x T
    count = weight.sum()
    nll_sum = (nll * weight).sum()
    loss = nll_sum / count.clamp(min=1.0)
    return loss, {"nll": nll_sum.detach(), "correct": correct, "count": count}
