"""Stages: each verb as a function from an input model (zoo name or artifact) to an artifact.

`compress.api` (what the CLI verbs and `import compress` call) and the recipe pipeline both
call these, so a single verb and a recipe share one code path.
"""
