"""Checkpoints: the load policy (no remote code or hub kernels without opt-in), one loader, tiny test models."""
