"""The command line: thin click commands over the library (one module each)."""

from .main import cli, main

__all__ = ["cli", "main"]
