"""Subcommands of ``diamond-cutter``; each module has ``register(subparsers)``."""
