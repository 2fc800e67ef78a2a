"""The `avskit` command line: one thin Typer sub-app per verb."""
