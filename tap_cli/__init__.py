"""The ``tap`` command: one entry point for every tool of the project."""
