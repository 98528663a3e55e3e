"""Adaptive input embeddings (Baevski & Auli, 2019), which torch does not provide.

The vocabulary, most frequent words first, is cut into bands at ``cutoffs``: band ``i`` embeds its
words in ``d_model // div_value**i`` dimensions and projects them up to ``d_model`` (band 0 needs no
projection), so the rare words of a large vocabulary cost few parameters. The bands mirror
``nn.AdaptiveLogSoftmaxWithLoss`` with the same cut-offs, which is what lets the input share its
weights with that softmax (``tied``, Baevski & Auli's tied adaptive input and softmax): band 0 is the
softmax head's rows for the shortlist, band ``i`` the ``i``-th tail cluster's output weights, and its
projection the transpose of that cluster's input projection. The output is scaled by sqrt(d_model),
as Transformer-XL and fairseq scale theirs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def band_dims(d_model: int, n_bands: int, div_value: float) -> list[int]:
    """Each band's embedding size, ``d_model // div_value**i`` as the adaptive softmax sizes its tails."""
    return [d_model] + [int(d_model // (div_value ** (i + 1))) for i in range(n_bands - 1)]


class AdaptiveInput(nn.Module):
    """B x T word ids -> B x T x d_model embeddings, band by band (module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        cutoffs: Sequence[int],
        div_value: float = 4.0,
        tied: nn.AdaptiveLogSoftmaxWithLoss | None = None,
    ):
        super().__init__()
        bounds = [0, *cutoffs, vocab_size]
        if any(lo >= hi for lo, hi in itertools.pairwise(bounds)):
            raise ValueError(f"cutoffs must increase strictly from above 0 to below the vocabulary size {vocab_size}")
        self.bounds, self.d_model, self.scale = bounds, d_model, math.sqrt(d_model)
        dims = band_dims(d_model, len(bounds) - 1, div_value)
        if min(dims) < 1:
            raise ValueError(f"d_model {d_model} and div_value {div_value} leave the last band no dimensions")
        if tied is not None:
            if list(tied.cutoffs) != [*cutoffs, vocab_size] or tied.in_features != d_model:
                raise ValueError("a tied adaptive input needs the adaptive softmax's vocabulary, size and cutoffs")
            # A list, not a submodule: the softmax's weights belong to the softmax, registered there once.
            self.tied = [tied]
            return
        self.tied = []
        # N(0, 1/dim) embeddings and N(0, 1/d_model) projections give every band unit-variance outputs once scaled.
        self.embeddings = nn.ParameterList(
            nn.Parameter(torch.randn(hi - lo, dim) / math.sqrt(dim))
            for (lo, hi), dim in zip(itertools.pairwise(bounds), dims, strict=True)
        )
        self.projections = nn.ParameterList(
            nn.Parameter(torch.randn(d_model, dim) / math.sqrt(d_model)) for dim in dims[1:]
        )

    def band_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """Per band: its embedding table (words x dim) and its projection (d_model x dim), None for band 0."""
        if self.tied:
            softmax = self.tied[0]
            head = softmax.head.weight[: self.bounds[1]]  # shortlist x D: the head's rows past it score clusters
            tails = [(cluster[1].weight, cluster[0].weight.t()) for cluster in softmax.tail]  # words x dim, D x dim
            return [(head, None), *tails]
        return [(self.embeddings[0], None), *zip(self.embeddings[1:], self.projections, strict=True)]

    def forward(self, tokens: Tensor) -> Tensor:
        out = None
        for (lo, hi), (weight, projection) in zip(itertools.pairwise(self.bounds), self.band_weights(), strict=True):
            inside = (tokens >= lo) & (tokens < hi)  # B x T
            # Every band runs on every token (masked afterwards) rather than on its own tokens only: no
            # host sync, and every weight gets a gradient each step, which DDP's reducer and the replay
            # path's all-reduce need from every rank.
            band = F.embedding((tokens - lo).clamp(0, hi - lo - 1), weight)  # B x T x dim
            if projection is not None:
                band = F.linear(band, projection)  # B x T x D
            band = band * inside.unsqueeze(-1)
            out = band if out is None else out + band
        return out * self.scale  # B x T x D
