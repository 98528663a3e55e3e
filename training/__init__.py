"""Pieces every runner shares: validated configs, atomic data-only checkpoints, divergence stop, path checks."""
