"""CLI sub-commands: one module per command, each defining ``register(subparsers)``."""
