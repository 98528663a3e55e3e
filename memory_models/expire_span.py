"""Expire-Span (Sukhbaatar et al. 2021, section 4): every memory predicts how long it is kept.

Each layer gives each memory ``h_i`` a span ``e_i = L * sigmoid(w . h_i + b)`` (eq. 3), shared by the
heads. A query ``d = t - i`` steps later weighs the memory with the soft mask
``m = clamp(1 + (e_i - d) / R, 0, 1)`` (eq. 5) and the attention is renormalised (eq. 4). Once
``d >= e_i + R`` the memory is expired for good and is physically removed from the cache at the end
of the call (block parallel), so compute and memory shrink with the learned spans. A memory lives
fewer than L + R steps, so a cache never holds more than ``L + R - 1`` memories and attention never
more than ``L + R - 1 + T`` keys.

Expired is final, per row. Spans are recomputed from the cached inputs with the current weights at
every call (below), so new weights could give an expired memory a longer span again; it never comes
back: the cache keeps no expired memory a query may see. Per row the cache is compacted to its live
memories and padded to the longest row with dead entries (age ``NEVER``, hidden from every query).
So a row's outputs do not depend on which other rows share its batch, also after the weights change
(tested). The authors' code drops, per batch, only as many memories as every row may lose, in
multiples of the block, and recomputes the spans of what it keeps, so a row there keeps some expired
memories, which can return and depend on the batch.

Training details of section 4.2 and A.1:
- the span loss ``alpha * e_i / T`` (eq. 7) is applied to a memory while a query of the current
  call sees it inside the ramp (``0 < m < 1``), the moment the task loss gives ``e_i`` its
  gradient ("Loss Computation"); each memory spends R steps in the ramp, hence the 1 / R;
- spans are recomputed from the cached inputs with the current weights at every call;
- random memory shortening with ``shorten=True``, in training mode ("Regularization"; off by default,
  as in the authors' code: the paper uses it for its longest-memory tasks): a length ``l ~ U(0, L)``,
  and with ``shorten_form="hide"`` (the paper's text, "a_ti = 0 for all t - i > l") keys more than l
  steps back are hidden; with ``"cap"`` (the authors' code, ``--expire-span-noisy``, which their
  enwik8 and 64k object-collision runs use) each span is capped at l and keeps its ramp,
  ``m = clamp(1 + (min(e_i, l) - d) / R, 0, 1)``, the span loss on the capped span. Either way the
  memory stays in the cache by its own span. ``l`` is drawn per row by ``begin_window`` and kept in
  the state, not drawn per call (the authors draw one per batch): an RL learner acts one step at a
  time and then recomputes the whole window, and with one draw per call every acting step would see
  another memory than the recompute, so the learner would train a policy that never acted. Drawn
  once per window and row, acting and the recompute share it, and the regulariser still varies from
  window to window and row to row. A caller that never calls ``begin_window`` gets no shortening
  (the initial state holds l = infinity);
- ``stable_spans=True`` for very large L ("Stable Training"): with ``stable_form="input"`` (the
  default, the authors' ``--expire-span-pre-div R``) ``e_i = L * sigmoid(w . h_i / R + b)``, only the
  input divided; ``"logit"`` is eq. 8 as printed, ``L * sigmoid((w . h_i + b) / R)``, which divides
  the bias too, so that with Adam (steps of about the learning rate whatever the gradient) the bias
  moves R times slower. The authors' paper-scale scripts (enwik8, object collision) leave it off;
  their small enwik8 model divides the input by R = 64. ``configs/copy.toml``, ``collision.toml``
  and ``lm_enwik8_small.toml`` set ``stable_spans = true`` and so get the input form;
- spans start small: ``w = 0`` and ``b = init_bias`` (A.1);
- relative position terms only for the nearest ``pos_len`` steps (A.1; a fixed length rather than
  the block size, so results do not depend on how a sequence is cut into windows).

With ``compact=False`` nothing is removed: the cache is the last ``L + R - 1`` steps, where expired
memories are marked dead (weight exactly zero) rather than dropped. Outputs are the same as the
compacted cache's at any weights (tested across weight changes); shapes never change and no call
waits on the host, which is what capturing an acting step as a CUDA graph needs (on a GPU, launch
overhead, not attention over a few hundred keys, bounds a one-step call).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.attention import TransformerLayer, episode_ages, visible
from memory_models.base import MemoryModel, MemoryRecord, MemoryState

NEVER = 2**62  # the age of a dead entry (expired, or padding): farther back than any episode reaches
SHORTEN_FORMS = ("hide", "cap")
STABLE_FORMS = ("input", "logit")


@dataclasses.dataclass
class ExpireSpanState(MemoryState):
    memory: list[Tensor]  # per layer B x M_l x D: the live memories (layer inputs); M_l varies
    memory_age: list[Tensor]  # per layer B x M_l: steps from each memory to the last step (NEVER: dead)
    episode_age: Tensor  # B: steps since the current episode began, at the last step (-1: none yet)
    shorten_to: Tensor  # B float: in training with shorten, keys more than this many steps back are hidden


def expire_mask(spans: Tensor, distance: Tensor, ramp: float) -> Tensor:
    """Soft mask m = clamp(1 + (e - d) / R, 0, 1); spans B x M, distance B x T x M -> B x T x M."""
    return (1 + (spans[:, None, :] - distance) / ramp).clamp(0, 1)


def ramp_loss(spans: Tensor, mask: Tensor, allowed: Tensor, ramp: float) -> Tensor:
    """Sum over rows of e_i / R for every (query, memory) pair inside the ramp (0 < m < 1).

    Only pairs a query may attend to count: there the task loss also reaches e_i through m.
    """
    in_ramp = (allowed & (mask > 0) & (mask < 1)).sum(1)  # B x M: queries that see each memory inside its ramp
    return (spans * in_ramp).sum() / ramp


class ExpireSpan(MemoryModel):
    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        max_span: int = 200,
        ramp: int = 16,
        loss_coef: float = 5e-6,
        init_bias: float = -2.0,
        shorten: bool = False,
        shorten_form: str = "hide",
        stable_spans: bool = False,
        stable_form: str = "input",
        pos_len: int = 128,
        compact: bool = True,
    ):
        """max_span: L; ramp: R; loss_coef: alpha; init_bias: initial logit of e / L; shorten: random
        memory shortening in training mode; shorten_form: "hide" (keys beyond l hidden) or "cap" (spans
        capped at l); stable_spans: the stable form for very large L; stable_form: "input" (w . h / R + b)
        or "logit" ((w . h + b) / R, eq. 8 as printed); pos_len: how many of the nearest steps get relative
        position terms; compact: remove expired memories from the cache (False: a fixed cache of the last
        L + R - 1 steps, see above)."""
        super().__init__()
        if max_span < 1 or ramp < 1:
            raise ValueError(f"max_span and ramp must be at least 1, got {max_span} and {ramp}")
        if shorten_form not in SHORTEN_FORMS or stable_form not in STABLE_FORMS:
            raise ValueError(
                f"shorten_form must be one of {SHORTEN_FORMS} and stable_form one of {STABLE_FORMS}, "
                f"got {shorten_form!r} and {stable_form!r}"
            )
        self.d_model, self.n_layers = d_model, n_layers
        self.max_span, self.ramp, self.loss_coef, self.shorten = max_span, ramp, loss_coef, shorten
        self.shorten_form = shorten_form
        self.input_scale = 1.0 / ramp if stable_spans else 1.0
        self.bias_scale = 1.0 / ramp if stable_spans and stable_form == "logit" else 1.0
        self.pos_len, self.compact = pos_len, compact
        self.cache_len = max_span + ramp - 1  # a memory's last visible step is at most L + R - 2 steps back
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, dropout, n_positions=pos_len) for _ in range(n_layers)
        )
        self.span_predictors = nn.ModuleList(nn.Linear(d_model, 1) for _ in range(n_layers))
        for predictor in self.span_predictors:
            nn.init.zeros_(predictor.weight)
            nn.init.constant_(predictor.bias, init_bias / self.bias_scale)
        self.out_norm = nn.LayerNorm(d_model)

    @property
    def static_state(self) -> bool:
        return not self.compact

    def initial_state(self, batch_size: int, device: torch.device | str) -> ExpireSpanState:
        dtype = self.out_norm.weight.dtype
        length = 0 if self.compact else self.cache_len  # a fixed cache starts full of dead zeros
        return ExpireSpanState(
            memory=[torch.zeros(batch_size, length, self.d_model, device=device, dtype=dtype) for _ in self.layers],
            memory_age=[torch.full((batch_size, length), NEVER, device=device, dtype=torch.long) for _ in self.layers],
            episode_age=torch.full((batch_size,), -1, device=device, dtype=torch.long),
            shorten_to=torch.full((batch_size,), float("inf"), device=device),
        )

    def begin_window(self, state: ExpireSpanState) -> ExpireSpanState:
        """A fresh shortening length l ~ U(0, L) per row in training with ``shorten``; unchanged otherwise."""
        if not (self.training and self.shorten):
            return state
        limit = torch.rand(state.shorten_to.shape, device=state.shorten_to.device) * self.max_span  # B
        return dataclasses.replace(state, shorten_to=limit)

    def spans(self, layer: int, memory: Tensor) -> Tensor:
        """B x M expire-spans e_i of the memories B x M x D at ``layer``."""
        predictor = self.span_predictors[layer]
        # a matrix-vector product, not the Linear's one-column matrix product: compiled, the latter is an external
        # GEMM call per step, and acting at 128 envs on a CPU took 1.6x as long with it
        logits = self.layers[layer].attention_input(memory) @ predictor.weight[0]  # B x M
        return self.max_span * torch.sigmoid(logits * self.input_scale + predictor.bias * self.bias_scale)

    def keeps(self, last_distance: Tensor, spans: Tensor, episode_age: Tensor) -> Tensor:
        """B x M bool: memories a later query may still see.

        last_distance: B x M steps from each memory to the last step; spans: B x M; episode_age: B.
        A memory stays while its mask at the next step is above zero and it lies in the episode
        of the last step (an episode start only hides more); a dead one (age NEVER) never does.
        """
        return (last_distance + 1 < spans + self.ramp) & (last_distance <= episode_age[:, None])

    def forward(self, x: Tensor, state: ExpireSpanState, first: Tensor) -> tuple[Tensor, ExpireSpanState, MemoryRecord]:
        batch, steps = x.shape[:2]
        ages = episode_ages(first, state.episode_age)  # B x T
        query = torch.arange(steps, device=x.device)  # T
        limit = state.shorten_to[:, None] if self.training and self.shorten else None  # B x 1
        hidden_beyond = limit[:, :, None] if limit is not None and self.shorten_form == "hide" else None  # B x 1 x 1
        h, aux_loss, sizes, new_spans, kept = x, x.new_zeros(()), [], [], []
        reach = None if self.compact else self.cache_len  # a fixed cache is contiguous in time; a compacted one is not
        per_layer = zip(self.layers, state.memory, state.memory_age, strict=True)
        for index, (layer, cache, cache_age) in enumerate(per_layer):
            context = torch.cat([cache, h], dim=1)  # B x (M + T) x D
            window_offset = -query.expand(batch, steps)  # B x T: key j is j steps after query 0
            offset = torch.cat([cache_age + 1, window_offset], dim=1)  # B x (M + T): distance to query 0
            distance = offset[:, None, :] + query[None, :, None]  # B x T x (M + T); dead keys lie NEVER back
            spans = self.spans(index, context)  # B x (M + T)
            seen_spans = spans if limit is None or hidden_beyond is not None else torch.minimum(spans, limit)
            mask = expire_mask(seen_spans, distance, self.ramp)  # B x T x (M + T)
            allowed = visible(distance, ages, hidden_beyond)  # B x T x (M + T)
            # live memories stay in order at the end of the cache: the nearest pos_len steps are the last keys
            h = layer(h, context, distance, allowed, mask.unsqueeze(1), recent=self.pos_len + steps - 1, reach=reach)
            aux_loss = aux_loss + self.loss_coef * ramp_loss(seen_spans, mask, allowed, self.ramp) / (batch * steps)
            sizes.append((allowed & (distance > 0) & (mask > 0)).sum(-1).to(x.dtype).mean())
            new_spans.append(spans[:, -steps:].detach())
            last_distance = offset + steps - 1  # B x (M + T): distance to the last query
            kept.append((context.detach(), last_distance, spans.detach()))
        if self.compact:
            memory, memory_age = self._compact(kept, ages[:, -1])
        else:  # the last L + R - 1 steps, those expired now marked dead for good
            memory = [context[:, -self.cache_len :] for context, _, _ in kept]
            memory_age = [
                torch.where(self.keeps(last_distance, spans, ages[:, -1]), last_distance, NEVER)[:, -self.cache_len :]
                for _, last_distance, spans in kept
            ]
        record = MemoryRecord(aux_loss=aux_loss, memory_size=torch.stack(sizes), spans=torch.stack(new_spans))
        next_state = ExpireSpanState(memory, memory_age, ages[:, -1], state.shorten_to)
        return self.out_norm(h), next_state, record

    def _compact(
        self, kept: list[tuple[Tensor, Tensor, Tensor]], episode_age: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per layer, move each row's live memories, in order, to the end and cut every row to the longest.

        kept: per layer, the context B x K x D, its distances to the last step B x K and its spans B x K.
        What a shorter row keeps before its live memories is dead (age NEVER): the row never sees it again.

        One host sync for all layers: the new cache lengths are sizes the next call allocates, and
        a layer where every row keeps every memory is left as it is.
        """
        keeps = [self.keeps(last_distance, spans, episode_age) for _, last_distance, spans in kept]  # B x K each
        counts = torch.stack([torch.stack(keep.sum(1).aminmax()) for keep in keeps])  # n_layers x 2
        memory, memory_age = [], []
        for (context, last_distance, _), keep, (fewest, length) in zip(kept, keeps, counts.tolist(), strict=True):
            batch, keys = keep.shape
            if fewest == keys:  # nothing expired in any row: the cache is the context as it is
                memory.append(context)
                memory_age.append(last_distance)
                continue
            order = torch.argsort(keep.to(torch.uint8), dim=1, stable=True)[:, keys - length :]  # B x M'
            # row-major flat indices: copying whole D-vectors is much faster than an expanded gather
            flat = (order + torch.arange(batch, device=order.device)[:, None] * keys).flatten()  # B * M'
            memory.append(context.flatten(0, 1)[flat].view(batch, length, -1))  # B x M' x D
            memory_age.append(torch.where(keep.gather(1, order), last_distance.gather(1, order), NEVER))  # B x M'
        return memory, memory_age
