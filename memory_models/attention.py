"""The attention core every transformer memory model shares.

One multi-head attention with relative positions serves Transformer-XL, Expire-Span,
Adaptive-Span, Compressive and Memformer; a model adds only its memory policy: which keys it
keeps, how far each key is from each query, and which keys each query may see.

``RelativeMultiHeadAttention(d_model, n_heads, dropout=0.0, n_positions=0)``
    ``forward(query, context, distance=None, allowed=None, soft_mask=None, recent=None, reach=None)``
    ``-> B x T x D``

    query: B x T x D, the inputs the queries are projected from.
    context: B x M x D, the inputs keys and values are projected from. For self-attention over a
        cache this is the cached memory followed by the current window (``torch.cat([memory, x], 1)``).
    distance: integer tensor broadcastable to B x T x M: how many steps key ``m`` lies before
        query ``t`` (0: the same step). Any per-key value is fine, so caches with removed entries
        or compressed slots simply pass their own distances. Distances in ``[0, n_positions)`` get
        the Transformer-XL relative term ``(q + v) . W_r r(d)`` with sinusoidal ``r``; farther keys
        (and every key when ``distance`` is None or ``n_positions`` is 0) get no position term.
    allowed: bool tensor broadcastable to B x T x M; False hides a key from a query. A query that
        may see no key at all gets a zero output (never NaN).
    soft_mask: float tensor broadcastable to B x H x T x M with values in [0, 1] (pass B x 1 x T x M
        for a mask shared by heads): the Expire-Span / Adaptive-Span ramp. It multiplies the
        softmax weights, which are then renormalised, eq. 4 of the Expire-Span paper:
        ``a'_tm = s_tm a_tm / sum_j s_tj a_tj`` (computed as one softmax of ``scores + log s``); a row
        whose weights all vanish outputs zeros. A key with ``s = 0`` is hidden like
        ``allowed=False``, so it gets exactly zero gradient.
    recent: optional int, a promise that only the last ``recent`` keys can lie closer than
        ``n_positions`` to any query; position terms are then computed for those keys alone, which
        makes their cost independent of the memory size (Expire-Span A.1).
    reach: optional int, a promise that the context is a cache of past steps then the queries' own
        steps, one key per step in time order, and that no query sees a key more than ``reach``
        steps back (Transformer-XL's cache, Adaptive-Span's widest span, Expire-Span's fixed cache).
        The queries are then attended in blocks, each against only the keys it can see
        (``query_blocks``): the same attention, with far fewer (query, key) pairs over long windows.

    Scores are ``((q + u) . k + (q + v) . W_r r(d)) / sqrt(d_head)`` (Dai et al. 2019, with the two
    learned biases u and v); dropout acts on the final weights; an output projection follows. When
    few queries meet many keys (a one-step acting call over a long cache), the key and value
    projections are folded into the queries and the weighted inputs instead of applied to every
    key: the same attention, many times cheaper there (``_folds`` picks the cheaper order).

``TransformerLayer(d_model, n_heads, dropout=0.0, n_positions=0, pre_norm=True, d_ff=4 * d_model)``
    ``forward(x, context, distance=None, allowed=None, soft_mask=None, recent=None, reach=None)``
    ``-> B x T x D``: attention of ``x`` over ``context`` (same arguments as above), then a ReLU
    feed-forward, each with a residual; layer norm before each sublayer (pre-LN) or after each
    residual (post-LN).
    ``attention_input(x)`` is what the attention projects (the normed ``x`` in pre-LN): models that
    compute something from the same memories (Expire-Span's spans) read it.

Episode boundaries. Every model keeps, per batch row, the age of the current episode: ``ages``
(B x T) counts the steps since each query's episode began (0 on its first step) and comes from
``episode_ages(first, last_age)``. A key ``d`` steps before a query belongs to the query's episode
exactly when ``0 <= d <= age``, so ``visible(distance, ages)`` is the mask that stops every leak
across episodes, whatever the cache holds: memory of an ended episode stays in the cache and is
hidden from the new one. Rows advance in lockstep, so one distance tensor serves all rows when the
cache layout is shared (``contiguous_distance``).

Example, one layer over a cache of the last M steps::

    ages = episode_ages(first, state_age)                  # B x T
    distance = contiguous_distance(M, T, x.device)          # 1 x T x (M + T)
    allowed = visible(distance, ages, max_distance=M)       # B x T x (M + T)
    out = layer(x, torch.cat([cache, x], 1), distance, allowed)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_QUERY_BLOCK = 16  # smaller blocks cost more in per-call overhead than they save


def sinusoids(n_positions: int, d_model: int) -> Tensor:
    """n_positions x d_model sinusoidal encodings of the distances 0 .. n_positions - 1."""
    distance = torch.arange(n_positions, dtype=torch.float32)[:, None]  # P x 1
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    angles = distance * inv_freq  # P x ceil(D / 2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)[:, :d_model]  # P x D


def episode_ages(first: Tensor, last_age: Tensor) -> Tensor:
    """B x T: steps since each step's episode began (0 where ``first`` is True).

    first: B x T bool; last_age: B, the age at the step before the window (-1 when nothing came
    before, so a window that does not start with ``first`` still sees no earlier memory).
    """
    steps = torch.arange(first.shape[1], device=first.device)  # T
    last_start = torch.where(first, steps, -1).cummax(dim=1).values  # B x T: -1 where none in window
    return torch.where(last_start >= 0, steps - last_start, last_age[:, None] + 1 + steps)


def contiguous_distance(n_memory: int, n_window: int, device: torch.device | str) -> Tensor:
    """1 x T x (M + T) distances from each window query to each key of [last M steps, window]."""
    query = torch.arange(n_window, device=device)[:, None] + n_memory  # T x 1
    key = torch.arange(n_memory + n_window, device=device)[None, :]  # 1 x (M + T)
    return (query - key).unsqueeze(0)


def visible(distance: Tensor, ages: Tensor, max_distance: int | Tensor | None = None) -> Tensor:
    """Bool B x T x M: the key is not in the future and lies in the query's episode (and within reach)."""
    allowed = (distance >= 0) & (distance <= ages[:, :, None])
    if max_distance is not None:
        allowed = allowed & (distance <= max_distance)
    return allowed


def query_blocks(n_queries: int, n_keys: int, reach: int | None) -> list[tuple[slice, slice]]:
    """(queries, keys) index blocks that together hold every (query, key) pair a query may see.

    Without ``reach``, one block: all queries against all keys. ``reach`` promises that the keys end
    with the queries' own steps, one key per step in time order (a cache of past steps, then the
    window), and that no query sees a key more than ``reach`` steps before it. Then blocks of about
    ``reach / 2`` queries each meet only their own steps and the ``reach`` before them: for a window of
    100 over a cache of 79 steps, 113 keys per query instead of 179. Rows are independent of each other,
    so the blocks give exactly the attention of one big block.
    """
    if reach is None:
        return [(slice(None), slice(None))]
    size = max(reach // 2, MIN_QUERY_BLOCK)
    own_first = n_keys - n_queries  # index of the first query's own step among the keys
    return [
        (slice(start, min(start + size, n_queries)), slice(max(own_first + start - reach, 0), own_first + start + size))
        for start in range(0, n_queries, size)
    ]


def mask_block(mask: Tensor | None, queries: slice, keys: slice) -> Tensor | None:
    """The block of a mask broadcastable to ... x T x M; a dimension of size 1 broadcasts and is kept whole."""
    if mask is None:
        return None
    return mask[..., queries if mask.shape[-2] > 1 else slice(None), keys if mask.shape[-1] > 1 else slice(None)]


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head attention with relative positions, hard and soft masks (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, n_positions: int = 0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.d_head, self.n_positions = n_heads, d_model // n_heads, n_positions
        self.scale = self.d_head**-0.5
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key_value = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.content_bias = nn.Parameter(torch.zeros(n_heads, self.d_head))  # u
        self.dropout = nn.Dropout(dropout)
        if n_positions:
            self.position = nn.Linear(d_model, d_model, bias=False)  # W_r
            self.position_bias = nn.Parameter(torch.zeros(n_heads, self.d_head))  # v
            self.register_buffer("encodings", sinusoids(n_positions, d_model), persistent=False)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # B x H x N x d_head

    def forward(
        self,
        query: Tensor,
        context: Tensor,
        distance: Tensor | None = None,
        allowed: Tensor | None = None,
        soft_mask: Tensor | None = None,
        recent: int | None = None,
        reach: int | None = None,
    ) -> Tensor:
        # 1 / sqrt(d_head) scales the queries, not the B x H x T x M scores: the same scores, one pass fewer over them
        q = self._heads(self.query(query)) * self.scale  # B x H x T x dh
        if self._folds(query.shape[1], context.shape[1]):
            out = self._attend(q, context, context, distance, allowed, soft_mask, recent)  # B x H x T x dh
        else:
            k, v = (self._heads(t) for t in self.key_value(context).chunk(2, dim=-1))  # B x H x M x dh
            blocks = query_blocks(query.shape[1], context.shape[1], reach)
            out = torch.cat(
                [
                    self._attend(
                        q[:, :, queries],
                        k[:, :, keys],
                        v[:, :, keys],
                        *(mask_block(mask, queries, keys) for mask in (distance, allowed, soft_mask)),
                        recent,
                    )
                    for queries, keys in blocks
                ],
                dim=2,
            )  # B x H x T x dh
        return self.out(out.transpose(1, 2).flatten(2))  # B x T x D

    def _attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        distance: Tensor | None,
        allowed: Tensor | None,
        soft_mask: Tensor | None,
        recent: int | None,
    ) -> Tensor:
        """B x H x T x dh attention of the scaled queries q (B x H x T x dh) over projected keys and values
        (B x H x M x dh each), or, folded, over the context itself (k and v both the B x M x D context)."""
        content_q = q + self.content_bias[:, None] * self.scale  # B x H x T x dh
        folded = k.dim() == 3
        if folded:
            w_key, w_value = self.key_value.weight.view(2, self.n_heads, self.d_head, -1).unbind(0)  # H x dh x D
            q_in = torch.einsum("bhtk,hkd->bhtd", content_q, w_key).flatten(1, 2)  # B x HT x D
            scores = (q_in @ k.transpose(-1, -2)).unflatten(1, q.shape[1:3])  # B x H x T x M
        else:
            scores = content_q @ k.transpose(-1, -2)  # B x H x T x M
        if self.n_positions and distance is not None:
            start = 0 if recent is None else max(scores.shape[-1] - recent, 0)
            positions = self._position_scores(q, distance[..., start:])  # B x H x T x (M - start)
            # out of place: an in-place add into a slice makes the backward copy all the scores
            scores = scores + (F.pad(positions, (start, 0)) if start else positions)
        if allowed is not None:
            allowed = allowed.unsqueeze(-3)  # B x 1 x T x M
        if soft_mask is not None:
            allowed = soft_mask > 0 if allowed is None else allowed & (soft_mask > 0)  # B x [H] x T x M
        if allowed is not None:
            scores = scores + self._mask_scores(allowed, soft_mask, scores.dtype)  # B x H x T x M
        weights = self.dropout(scores.softmax(dim=-1))  # B x H x T x M
        if folded:
            mixed = (weights.flatten(1, 2) @ v).unflatten(1, q.shape[1:3])  # B x H x T x D
            out = torch.einsum("bhtd,hkd->bhtk", mixed, w_value)  # B x H x T x dh
        else:
            out = weights @ v  # B x H x T x dh
        if allowed is not None:
            out = out * allowed.any(dim=-1, keepdim=True)  # a query with no key to see outputs zeros
        return out

    def _folds(self, n_queries: int, n_keys: int) -> bool:
        """Whether folding the key and value projections into the queries is the cheaper order.

        ``q . (W_k c) = (W_k^T q) . c`` and ``sum_m a_m W_v c_m = W_v sum_m a_m c_m``. Projecting costs
        ``2 D^2`` multiply-adds per key and ``2 D / H`` per head and (query, key) pair; folding costs ``2 D``
        per head and pair and ``2 D^2`` per query. One query over a cache of 80 keys (acting) is 14x cheaper
        folded; a 100-step window over 180 keys (learning) is cheaper projected.
        """
        d_model = self.n_heads * self.d_head
        projected = n_keys * d_model + n_queries * n_keys  # x 2 D multiply-adds
        folded = self.n_heads * n_queries * n_keys + n_queries * d_model  # x 2 D multiply-adds
        return folded < projected

    @staticmethod
    def _mask_scores(allowed: Tensor, soft_mask: Tensor | None, dtype: torch.dtype) -> Tensor:
        """B x [H] x T x M terms added to the scores: ``log m`` (or 0) for keys a query sees, far below any
        score for the hidden ones, whose weights then underflow to exactly zero (and so do their gradients).

        softmax(s + log m) = m a / sum_j m a_j is eq. 4 inside one fused softmax. Hiding by addition, not by
        ``masked_fill`` on the B x H x T x M scores: on a CPU that fill with a broadcast mask is about 7x
        slower than the add, forward and backward. Half the dtype's lowest value keeps a row whose keys are
        all hidden finite (no NaN; its output is zeroed after).
        """
        if soft_mask is None:
            seen = torch.zeros((), dtype=dtype, device=allowed.device)
        else:
            seen = soft_mask.clamp_min(torch.finfo(soft_mask.dtype).tiny).log()  # B x [H] x T x M
        return torch.where(allowed, seen, torch.finfo(seen.dtype).min / 2)

    def _position_scores(self, q: Tensor, distance: Tensor) -> Tensor:
        """B x H x T x M position terms, zero for keys at or beyond n_positions steps; ``q`` is already scaled."""
        relative = self.position(self.encodings).unflatten(-1, (self.n_heads, self.d_head))  # P x H x dh
        position_q = q + self.position_bias[:, None] * self.scale  # B x H x T x dh
        # einsum, not a broadcast matmul, which would copy the encodings once per batch row
        per_distance = torch.einsum("bhtk,phk->bhtp", position_q, relative)  # B x H x T x P
        per_distance = F.pad(per_distance, (0, 1))  # B x H x T x (P + 1): the last column is "too far"
        shape = (*per_distance.shape[:-1], distance.shape[-1])
        index = distance.clamp(0, self.n_positions).unsqueeze(-3).expand(shape)  # B x H x T x M
        return per_distance.gather(-1, index)


class TransformerLayer(nn.Module):
    """Relative attention over a context, then a feed-forward, each with a residual (pre- or post-LN)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        n_positions: int = 0,
        pre_norm: bool = True,
        d_ff: int | None = None,
    ):
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = RelativeMultiHeadAttention(d_model, n_heads, dropout, n_positions)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff or 4 * d_model),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(d_ff or 4 * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def attention_input(self, x: Tensor) -> Tensor:
        return self.norm1(x) if self.pre_norm else x

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        distance: Tensor | None = None,
        allowed: Tensor | None = None,
        soft_mask: Tensor | None = None,
        recent: int | None = None,
        reach: int | None = None,
    ) -> Tensor:
        attended = self.attention(
            self.attention_input(x), self.attention_input(context), distance, allowed, soft_mask, recent, reach
        )  # B x T x D
        if self.pre_norm:
            h = x + self.dropout(attended)
            return h + self.dropout(self.feed_forward(self.norm2(h)))
        h = self.norm1(x + self.dropout(attended))
        return self.norm2(h + self.dropout(self.feed_forward(h)))
