"""Repository rules: layer ranks, suite rules, CLI help and options generated from configs,
the wheel that cannot be shadowed."""
