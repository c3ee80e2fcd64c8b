"""Artifacts on disk: the card format, durable writes, the output lock, input resolution."""
