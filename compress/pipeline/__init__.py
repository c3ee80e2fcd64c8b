"""Recipes: schema, stage kinds, run/resume, report, Optuna tuning."""
