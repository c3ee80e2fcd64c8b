"""Several processes (torchrun): the process group, collectives, per-rank shards."""
