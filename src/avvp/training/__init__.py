"""The one training loop, checkpoints and distributed setup."""
