"""Subcommands of `llorch`, one module each, loaded only when invoked."""
