"""`python -m edgebus` runs the `edgebus` command."""

from .cli import run

run()
