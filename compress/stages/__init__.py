"""Stages: each verb as a function from an input model to an artifact; `compress.api` (CLI,
`import compress`) and recipes both call these, so a verb and a recipe share one code path."""
