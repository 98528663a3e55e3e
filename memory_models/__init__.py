"""Pluggable memory models behind one interface (see ``memory_models/base.py``).

``build(name, **config)`` returns a ``MemoryModel``; ``MODEL_NAMES`` lists the valid names.
``clamp_parameters(module)`` belongs after every optimiser step of a loop that trains one.
"""

from __future__ import annotations

import importlib
import inspect

from torch import nn

from memory_models.base import MemoryModel, MemoryRecord, MemoryState

# name -> "module:Class"; imported lazily so one model's import cost is not paid by the others.
_REGISTRY = {
    "none": "memory_models.feedforward:FeedForward",
    "lstm": "memory_models.lstm:LSTMMemory",
    "gru": "memory_models.gru:GRUMemory",
    "transformer_xl": "memory_models.transformer_xl:TransformerXL",
    "expire_span": "memory_models.expire_span:ExpireSpan",
    "adaptive_span": "memory_models.adaptive_span:AdaptiveSpan",
    "compressive": "memory_models.compressive:Compressive",
    "memformer": "memory_models.memformer:Memformer",
}
MODEL_NAMES = tuple(_REGISTRY)


def model_class(name: str) -> type[MemoryModel]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown memory model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def model_options(name: str) -> dict[str, object]:
    """The options ``build(name, ...)`` accepts, with their defaults."""
    parameters = inspect.signature(model_class(name).__init__).parameters
    return {k: p.default for k, p in parameters.items() if k != "self"}


def build(name: str, **config: object) -> MemoryModel:
    """Build the memory model ``name`` with the given options; unknown ones are an error."""
    options = model_options(name)
    unknown = sorted(set(config) - set(options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for memory model {name!r}; valid options: {', '.join(options)}"
        )
    check_common_options(config)
    return model_class(name)(**config)


def check_common_options(config: dict[str, object]) -> None:
    """ValueErrors for the options every model shares, before a bad one fails deep inside a model as a traceback."""
    for key in ("d_model", "n_layers", "n_heads"):
        if key in config and (isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1):
            raise ValueError(f"{key} must be an integer of at least 1, got {config[key]!r}")
    dropout = config.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


def clamp_parameters(module: nn.Module) -> None:
    """Call ``clamp_parameters()`` of every memory model inside ``module`` (a policy, a DDP wrapper, the model).

    Training loops call this after each optimiser step: Adaptive-Span's span ratios go back into [0, 1]
    there, as in the authors' code; for the other models it does nothing.
    """
    for child in module.modules():
        if isinstance(child, MemoryModel):
            child.clamp_parameters()


__all__ = [
    "MODEL_NAMES",
    "MemoryModel",
    "MemoryRecord",
    "MemoryState",
    "build",
    "clamp_parameters",
    "model_class",
    "model_options",
]
