"""Training MicroCinema: data, synthetic videos, the training loop. CLI: ``python -m microcinema_core.train``."""
