"""The policy's input for any supported observation space: each part encoded, joined, then a linear to d_model.

Box images (3-D, channels first or last, at most 4 channels) go through a small conv net, as pixels
scaled by the box's high, or, with ``agent.image = "symbolic"``, as codes: minigrid's image is a grid of
(object, colour, state) indices in a 0-255 uint8 Box, and scaled like pixels a key (5) and a ball (6)
differ by 0.004, too little for a freshly initialised net to tell apart, so each (channel, value) gets an
embedding, summed per cell (BabyAI's bag of words), before the convolutions. Other Boxes go through
an MLP, optionally normalised by running statistics; Discrete and MultiDiscrete through embeddings (one
vector per component); MultiBinary through an MLP. A Dict or Tuple arrives packed (``agents/spaces.py``)
and is unpacked here. The project's word grids keep their own encoder (``agents.policy.WordGridEncoder``).

Running normalisation changes only between windows (``update_statistics``, called after each
update): acting and the learner's recompute of a window see the same statistics, so the learner
recomputes the very policy that acted.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist
from gymnasium import spaces
from torch import Tensor, nn

from agents.spaces import is_composite, leaf_size, leaves

MAX_CHANNELS = 4  # a 3-D Box with at most this many channels first or last is an image
NORM_CLIP = 10.0  # normalised inputs are clipped to +-10 standard deviations, as in sb3's VecNormalize


def image_layout(space: spaces.Space) -> str | None:
    """ "hwc" or "chw" for a Box image, None for anything else."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        return None
    if space.shape[-1] <= MAX_CHANNELS:
        return "hwc"
    if space.shape[0] <= MAX_CHANNELS:
        return "chw"
    return None


class RunningNorm(nn.Module):
    """Per-feature running mean and variance (summed over ranks under torchrun), updated between windows."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        scale = (self.var + 1e-8).rsqrt()  # F
        return ((x - self.mean.to(x.dtype)) * scale.to(x.dtype)).clamp(-NORM_CLIP, NORM_CLIP)  # ... x F

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge a batch (... x F) into the statistics (Chan et al.'s parallel update)."""
        flat = x.reshape(-1, x.shape[-1]).double()  # M x F
        moments = torch.cat([flat.new_tensor([flat.shape[0]]), flat.sum(0), flat.pow(2).sum(0)])  # 1 + 2F
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
        size = self.mean.shape[0]
        count, total, squares = moments[0], moments[1 : 1 + size], moments[1 + size :]
        batch_mean = total / count
        batch_var = (squares / count - batch_mean.pow(2)).clamp(min=0)
        merged = self.count + count
        delta = batch_mean - self.mean
        squares_total = self.var * self.count + batch_var * count + delta.pow(2) * self.count * count / merged  # F
        self.var.copy_(squares_total / merged)
        self.mean.add_(delta * count / merged)
        self.count.copy_(merged)


class BoxEncoder(nn.Module):
    def __init__(self, space: spaces.Box, hidden: int, normalize: bool):
        super().__init__()
        self.shape = space.shape
        size = int(math.prod(space.shape))
        self.norm = RunningNorm(size) if normalize else None
        self.mlp = nn.Sequential(nn.Linear(size, hidden), nn.ReLU())
        self.out_dim = hidden

    def flat(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[: x.dim() - len(self.shape)], -1).float()  # ... x F

    def forward(self, x: Tensor) -> Tensor:
        flat = self.flat(x)
        return self.mlp(flat if self.norm is None else self.norm(flat))  # ... x hidden


IMAGE_KINDS = ("pixels", "symbolic")


class SymbolicCells(nn.Module):
    """An image of codes (M x C x H x W integers) -> M x E x H x W: each channel's code embedded, summed per cell."""

    def __init__(self, space: spaces.Box, channels: int, embed_dim: int):
        super().__init__()
        low, high = float(np.min(space.low)), float(np.max(space.high))
        if not np.issubdtype(space.dtype, np.integer) or low < 0 or not math.isfinite(high):
            raise ValueError(
                f'agent.image = "symbolic" needs a Box of non-negative bounded integers (codes), got {space}'
            )
        self.codes = int(high) + 1
        offsets = torch.arange(channels) * self.codes  # C: each channel's codes have their own rows
        self.register_buffer("offsets", offsets.view(1, channels, 1, 1), persistent=False)
        self.embedding = nn.Embedding(channels * self.codes, embed_dim)

    def forward(self, images: Tensor) -> Tensor:
        rows = images.long() + self.offsets  # M x C x H x W
        return self.embedding(rows).sum(1).permute(0, 3, 1, 2)  # M x E x H x W


class ImageEncoder(nn.Module):
    """Two 3x3 convolutions (the second one strided while the image is larger than 8), then flattened; pixels
    scaled to [0, 1] or codes embedded first (``kind``)."""

    def __init__(self, space: spaces.Box, layout: str, kind: str = "pixels", embed_dim: int = 16, channels: int = 32):
        super().__init__()
        self.shape, self.layout = space.shape, layout
        c, h, w = space.shape if layout == "chw" else (space.shape[2], space.shape[0], space.shape[1])
        self.cells = SymbolicCells(space, c, embed_dim) if kind == "symbolic" else None
        high = float(np.max(space.high))
        self.scale = 1.0 / high if math.isfinite(high) and high > 0 else 1.0  # uint8 pixels (0-255) to [0, 1]
        in_channels = c if self.cells is None else embed_dim
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels // 2, 3, padding=1), nn.ReLU()]
        in_channels = channels // 2
        while max(h, w) > 8:
            layers += [nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.ReLU()]
            in_channels, h, w = channels, (h + 1) // 2, (w + 1) // 2
        layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = channels * h * w

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-3]
        images = x.reshape(-1, *self.shape)  # M x 3-D image
        if self.layout == "hwc":
            images = images.permute(0, 3, 1, 2)  # M x C x H x W
        inputs = images.float() * self.scale if self.cells is None else self.cells(images)  # M x C' x H x W
        return self.net(inputs).reshape(*lead, -1)  # ... x out_dim


class DiscreteEncoder(nn.Module):
    def __init__(self, space: spaces.Discrete, embed_dim: int):
        super().__init__()
        self.start = int(space.start)
        self.embedding = nn.Embedding(int(space.n), embed_dim)
        self.out_dim = embed_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x.long() - self.start)  # ... x E


class MultiDiscreteEncoder(nn.Module):
    """One embedding table for all components, each component's values at its own offset."""

    def __init__(self, space: spaces.MultiDiscrete, embed_dim: int):
        super().__init__()
        self.shape = space.nvec.shape
        nvec = space.nvec.reshape(-1)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]) - space.start.reshape(-1)
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False)  # K
        self.embedding = nn.Embedding(int(nvec.sum()), embed_dim)
        self.out_dim = embed_dim * len(nvec)

    def forward(self, x: Tensor) -> Tensor:
        codes = x.reshape(*x.shape[: x.dim() - len(self.shape)], -1).long() + self.offsets  # ... x K
        return self.embedding(codes).flatten(-2)  # ... x K E


class MultiBinaryEncoder(nn.Module):
    def __init__(self, space: spaces.MultiBinary, hidden: int):
        super().__init__()
        self.shape = space.shape
        self.mlp = nn.Sequential(nn.Linear(int(math.prod(space.shape)), hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.reshape(*x.shape[: x.dim() - len(self.shape)], -1).float())  # ... x hidden


def leaf_encoder(space: spaces.Space, embed_dim: int, hidden: int, normalize: bool, image: str) -> nn.Module:
    layout = image_layout(space)
    if layout is not None:
        return ImageEncoder(space, layout, image, embed_dim)
    if isinstance(space, spaces.Box):
        return BoxEncoder(space, hidden, normalize)
    if isinstance(space, spaces.Discrete):
        return DiscreteEncoder(space, embed_dim)
    if isinstance(space, spaces.MultiDiscrete):
        return MultiDiscreteEncoder(space, embed_dim)
    return MultiBinaryEncoder(space, hidden)


class SpaceEncoder(nn.Module):
    """Any supported (text-free) observation space -> ... x d_model."""

    def __init__(
        self, space: spaces.Space, d_model: int, embed_dim: int, hidden: int, normalize: bool, image: str = "pixels"
    ):
        super().__init__()
        self.composite = is_composite(space)
        self.leaf_spaces = leaves(space)
        self.sizes = [leaf_size(leaf) for leaf in self.leaf_spaces]
        self.parts = nn.ModuleList(leaf_encoder(leaf, embed_dim, hidden, normalize, image) for leaf in self.leaf_spaces)
        self.project = nn.Linear(sum(part.out_dim for part in self.parts), d_model)

    def unpack(self, obs: Tensor) -> list[Tensor]:
        """The leaves' observations: ``obs`` itself for one space, else slices of the packed ... x D vector."""
        if not self.composite:
            return [obs]
        lead = obs.shape[:-1]
        out = []
        for chunk, leaf in zip(obs.split(self.sizes, dim=-1), self.leaf_spaces, strict=True):
            shape = leaf.nvec.shape if isinstance(leaf, spaces.MultiDiscrete) else leaf.shape
            out.append(chunk.reshape(*lead, *shape))  # ... x leaf shape
        return out

    def forward(self, obs: Tensor) -> Tensor:
        features = [part(x) for part, x in zip(self.parts, self.unpack(obs), strict=True)]  # each ... x F_i
        return torch.relu(self.project(torch.cat(features, dim=-1)))  # ... x d_model

    def update_statistics(self, obs: Tensor) -> None:
        """Merge a window's observations (N x T x ...) into every running normaliser."""
        for part, x in zip(self.parts, self.unpack(obs), strict=True):
            if isinstance(part, BoxEncoder) and part.norm is not None:
                part.norm.update(part.flat(x))
