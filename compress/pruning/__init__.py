"""Structured pruning over torch-pruning: config, importance, planner, session, sensitivity, cost."""
