"""The `llorch` command line: one entry point over the harness, the reference and the tools."""
