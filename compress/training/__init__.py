"""Training: the fit loop, checkpoints and resume, mixed precision, evaluation."""
