"""The one exception a runner turns into a one-line message and a non-zero exit once training has started."""


class RunStopped(RuntimeError):
    """The run stopped itself to protect its work (divergence, a full disk); the message says why and what was kept."""
