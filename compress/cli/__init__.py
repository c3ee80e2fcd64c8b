"""Command-line interface (Typer). `compress --help` lists the verbs."""
