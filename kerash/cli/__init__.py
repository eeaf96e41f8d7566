"""Thin typer commands: parse the command line, call the library, print."""
