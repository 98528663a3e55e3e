"""Pieces every runner shares: configs with validated overrides, atomic checkpoints, torchrun set-up."""
