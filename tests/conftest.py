"""Suite-wide settings: one torch thread per test process.

The tests use tiny tensors, where thread start-up and contention cost more than they save; one
thread also keeps the suite's timing steady on a shared 2-core machine.
"""

import torch

torch.set_num_threads(1)


def readout(out: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient reaches every input the outputs ``out`` depend on.

    Models end in a LayerNorm, so ``out.sum()`` is a constant (its gradient is rounding noise) and
    ``out.pow(2).sum()`` nearly one; a fixed random weighting of the outputs is neither.
    """
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    return (out * weights).sum()
