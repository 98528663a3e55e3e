"""Adaptive-Span (Sukhbaatar et al. 2019): every head learns how far back it looks.

Head h of a layer has a span ``z_h = S * r_h`` with a learned ratio ``r_h`` in [0, 1] (S =
``max_span``). A key ``d`` steps back is weighed with the ramp mask ``m = clamp(1 + (z_h - d) / R,
0, 1)`` and attention is renormalised; keys farther than S steps are never seen. The span loss
``loss_coef * S * mean_h r_h`` per layer pulls spans down.

Bounds, as the authors' code (facebookresearch/transformer-sequential, ``param_clamp``): the
training loop calls ``clamp_parameters()`` after each optimiser step (``memory_models.clamp_parameters``
finds it inside any wrapper), which puts every ``r_h`` back into [0, 1]. A span resting at a bound
therefore moves back as soon as a gradient points inwards: at ``r_h = 0`` the keys inside the ramp
still give the task gradient. The forward pass clamps too, so a loop without the hook still uses
spans in [0, S], but its ratios may then leave [0, 1] and stop learning there.

Cache: each call attends over the keys its widest head sees (``ceil(max_h z_h + R) - 1`` steps
back, at most S), so compute follows the learned spans; the cache carried to the next call keeps
``cache_slack`` steps more (at most S), as the reference keeps 64: an optimiser step that lengthens
a span by up to ``cache_slack`` steps then finds every key its queries should see. A span that grows
by more between two calls misses the keys it did not keep, for that one call.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.attention import TransformerLayer, contiguous_distance, episode_ages, visible
from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class AdaptiveSpanState(MemoryState):
    memory: list[Tensor]  # per layer B x M_l x D: that layer's inputs of the last M_l steps, oldest first
    episode_age: Tensor  # B: steps since the current episode began, at the last step (-1: none yet)


def span_mask(spans: Tensor, distance: Tensor, ramp: float) -> Tensor:
    """Soft mask clamp(1 + (z_h - d) / R, 0, 1); spans H, distance 1 x T x M -> 1 x H x T x M."""
    return (1 + (spans[:, None, None] - distance.unsqueeze(1)) / ramp).clamp(0, 1)


class AdaptiveSpan(MemoryModel):
    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        max_span: int = 200,
        ramp: int = 16,
        loss_coef: float = 2e-6,
        init_span: float = 0.0,
        cache_slack: int = 64,
    ):
        """max_span: S; ramp: R; loss_coef: the span loss coefficient; init_span: initial z_h / S;
        cache_slack: steps the cache keeps beyond the widest head's reach, for spans that grow between calls."""
        super().__init__()
        if max_span < 1 or ramp < 1:
            raise ValueError(f"max_span and ramp must be at least 1, got {max_span} and {ramp}")
        if cache_slack < 0:
            raise ValueError(f"cache_slack must be at least 0, got {cache_slack}")
        if not 0.0 <= init_span <= 1.0:
            raise ValueError(f"init_span must lie in [0, 1], got {init_span}")
        self.d_model, self.n_layers = d_model, n_layers
        self.max_span, self.ramp, self.loss_coef, self.cache_slack = max_span, ramp, loss_coef, cache_slack
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, dropout, n_positions=max_span + 1) for _ in range(n_layers)
        )
        self.span_ratios = nn.Parameter(torch.full((n_layers, n_heads), init_span))
        self.out_norm = nn.LayerNorm(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str) -> AdaptiveSpanState:
        dtype = self.out_norm.weight.dtype
        return AdaptiveSpanState(
            memory=[torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype) for _ in self.layers],
            episode_age=torch.full((batch_size,), -1, device=device, dtype=torch.long),
        )

    def current_spans(self) -> Tensor:
        """n_layers x H spans z_h = S * r_h, r_h clamped to [0, 1] (a no-op after ``clamp_parameters``)."""
        return self.max_span * self.span_ratios.clamp(0, 1)

    @torch.no_grad()
    def clamp_parameters(self) -> None:
        """Put every span ratio back into [0, 1]; call it after each optimiser step."""
        self.span_ratios.clamp_(0, 1)

    def reaches(self, spans: Tensor) -> list[int]:
        """Per layer, the farthest key its widest head sees: ``ceil(max_h z_h + R) - 1`` steps, at most S."""
        reach = (spans.detach().amax(dim=1) + self.ramp).ceil().long() - 1  # n_layers
        return reach.clamp(0, self.max_span).tolist()

    def forward(
        self, x: Tensor, state: AdaptiveSpanState, first: Tensor
    ) -> tuple[Tensor, AdaptiveSpanState, MemoryRecord]:
        steps = x.shape[1]
        ages = episode_ages(first, state.episode_age)  # B x T
        spans = self.current_spans()  # n_layers x H
        reaches = self.reaches(spans)  # one host sync per call
        h, memory, sizes = x, [], []
        for layer, cache, layer_spans, reach in zip(self.layers, state.memory, spans, reaches, strict=True):
            context = torch.cat([cache, h], dim=1)  # B x (M + T) x D
            keep = min(reach + self.cache_slack, self.max_span, context.shape[1])
            memory.append(context[:, context.shape[1] - keep :].detach())
            context = context[:, max(context.shape[1] - reach - steps, 0) :]  # B x (M' + T) x D: keys in reach
            distance = contiguous_distance(context.shape[1] - steps, steps, x.device)  # 1 x T x (M' + T)
            allowed = visible(distance, ages, self.max_span)  # B x T x (M' + T)
            mask = span_mask(layer_spans, distance, self.ramp)  # 1 x H x T x (M' + T)
            h = layer(h, context, distance, allowed, mask, reach=reach)  # B x T x D: no head sees further
            seen = allowed & (distance > 0) & (mask.amax(dim=1) > 0)  # a key any head still sees
            sizes.append(seen.sum(-1).to(x.dtype).mean())
        widest = spans.detach().amax(dim=1).to(x.dtype)  # n_layers
        record = MemoryRecord(
            aux_loss=self.loss_coef * spans.mean(dim=1).sum(),  # loss_coef * S * mean_h r_h per layer
            memory_size=torch.stack(sizes),
            spans=widest[:, None, None].expand(-1, *x.shape[:2]),
        )
        return self.out_norm(h), AdaptiveSpanState(memory, ages[:, -1]), record
