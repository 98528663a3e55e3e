"""Stop a run the moment it diverges, before a non-finite model can overwrite the last good checkpoint.

A runner calls ``DivergenceGuard.check`` after every update with the update's scalars (losses,
gradient norm) and the model: one host sync per update tests them and every parameter together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from training.errors import RunStopped

MAX_NAMED = 3  # non-finite scalars named in the message; the rest are counted


class DivergenceError(RunStopped):
    """A loss, gradient norm or parameter became NaN or infinite."""


def _all_finite(tensors: list[Tensor], device: torch.device) -> Tensor:
    """One int32 flag on ``device``: 1 when every tensor is finite."""
    flags = [torch.isfinite(t.detach()).all().to(device) for t in tensors]
    return torch.stack(flags).all().to(torch.int32) if flags else torch.ones((), dtype=torch.int32, device=device)


class DivergenceGuard:
    """Raises ``DivergenceError`` naming the step, the non-finite values and ``cause`` (the settings to lower).

    Under torchrun every rank must call ``check`` on every update: the verdict is agreed by all ranks,
    so they stop together instead of leaving the others waiting in a collective.
    """

    def __init__(self, checkpoint: Path, cause: str, distributed: bool = False):
        self.checkpoint, self.cause, self.distributed = Path(checkpoint), cause, distributed

    def check(self, step: int, values: Mapping[str, Tensor | float], model: nn.Module) -> None:
        """``values``: the update's scalars by name; ``model``: the module whose parameters are tested."""
        parameters = dict(model.named_parameters())
        device = next(iter(parameters.values())).device if parameters else torch.device("cpu")
        scalars = {name: torch.as_tensor(value, dtype=torch.float32, device=device) for name, value in values.items()}
        finite = _all_finite([*scalars.values(), *parameters.values()], device)
        if self.distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item():  # the one host sync
            return
        found = [f"{name} = {v.item():g}" for name, v in scalars.items() if not torch.isfinite(v).all()]
        if len(found) > MAX_NAMED:
            found = [*found[:MAX_NAMED], f"{len(found) - MAX_NAMED} more"]
        bad_parameters = [name for name, p in parameters.items() if not torch.isfinite(p.detach()).all()]
        if bad_parameters:
            found.append(f"{len(bad_parameters)} of {len(parameters)} parameter tensors (first: {bad_parameters[0]})")
        if not found:
            found.append("values on another rank")
        kept = (
            f"the last good checkpoint {str(self.checkpoint)!r} was not overwritten"
            if self.checkpoint.exists()
            else "no checkpoint had been written yet"
        )
        raise DivergenceError(
            f"training diverged at step {step}: non-finite {'; '.join(found)}. Likely cause: {self.cause}. "
            f"Stopped before saving: {kept}"
        )
