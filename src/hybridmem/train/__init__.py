"""Training: checkpoints (state.py), EMA, torchrun/DDP helpers, logging, and the VAE and world-model loops."""
